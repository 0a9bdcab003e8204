import unittest

from roman import from_roman, to_roman

CASES = {1: "I", 3: "III", 4: "IV", 9: "IX", 14: "XIV", 40: "XL", 90: "XC", 400: "CD", 1994: "MCMXCIV",
         2024: "MMXXIV", 3999: "MMMCMXCIX", 58: "LVIII", 500: "D"}


class RomanTest(unittest.TestCase):
    def test_to_roman(self):
        for number, text in CASES.items():
            self.assertEqual(to_roman(number), text)

    def test_from_roman(self):
        for number, text in CASES.items():
            self.assertEqual(from_roman(text), number)

    def test_round_trip(self):
        for number in range(1, 400):
            self.assertEqual(from_roman(to_roman(number)), number)

    def test_range(self):
        for bad in (0, -1, 4000):
            with self.assertRaises(ValueError):
                to_roman(bad)


if __name__ == "__main__":
    unittest.main()
