import datetime
import unittest

from dates import day_of_year, days_in_month, is_leap_year, weekday


class DatesTest(unittest.TestCase):
    def test_leap(self):
        self.assertTrue(is_leap_year(2024))
        self.assertTrue(is_leap_year(2000))
        self.assertFalse(is_leap_year(1900))
        self.assertFalse(is_leap_year(2023))

    def test_days_in_month(self):
        self.assertEqual(days_in_month(2023, 2), 28)
        self.assertEqual(days_in_month(2024, 2), 29)
        self.assertEqual(days_in_month(2024, 1), 31)
        self.assertEqual(days_in_month(2024, 12), 31)
        self.assertEqual(days_in_month(2024, 4), 30)
        for bad in (0, 13):
            with self.assertRaises(ValueError):
                days_in_month(2024, bad)

    def test_day_of_year(self):
        self.assertEqual(day_of_year(2023, 1, 1), 1)
        self.assertEqual(day_of_year(2023, 12, 31), 365)
        self.assertEqual(day_of_year(2024, 12, 31), 366)
        self.assertEqual(day_of_year(2024, 3, 1), 61)
        with self.assertRaises(ValueError):
            day_of_year(2023, 2, 29)
        with self.assertRaises(ValueError):
            day_of_year(2023, 5, 0)

    def test_weekday_matches_datetime(self):
        for year in (1999, 2000, 2023, 2024):
            for month in range(1, 13):
                for day in (1, 15, 28):
                    self.assertEqual(weekday(year, month, day), datetime.date(year, month, day).weekday())


if __name__ == "__main__":
    unittest.main()
