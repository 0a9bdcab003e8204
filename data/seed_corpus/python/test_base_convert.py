import unittest

from base_convert import from_base, to_base


class BaseTest(unittest.TestCase):
    def test_to_base(self):
        self.assertEqual(to_base(0, 2), "0")
        self.assertEqual(to_base(10, 2), "1010")
        self.assertEqual(to_base(255, 16), "ff")
        self.assertEqual(to_base(-255, 16), "-ff")
        self.assertEqual(to_base(35, 36), "z")
        self.assertEqual(to_base(36, 36), "10")
        self.assertEqual(to_base(8, 8), "10")

    def test_from_base(self):
        self.assertEqual(from_base("1010", 2), 10)
        self.assertEqual(from_base("FF", 16), 255)
        self.assertEqual(from_base("-z", 36), -35)
        self.assertEqual(from_base(" 777 ", 8), 511)

    def test_round_trip(self):
        for base in (2, 3, 7, 10, 16, 36):
            for number in (-1000, -1, 0, 1, 2, 99, 12345):
                self.assertEqual(from_base(to_base(number, base), base), number)

    def test_errors(self):
        for bad_base in (1, 37):
            with self.assertRaises(ValueError):
                to_base(5, bad_base)
            with self.assertRaises(ValueError):
                from_base("1", bad_base)
        with self.assertRaises(ValueError):
            from_base("12", 2)
        with self.assertRaises(ValueError):
            from_base("-", 10)
        with self.assertRaises(ValueError):
            from_base("1!", 10)


if __name__ == "__main__":
    unittest.main()
