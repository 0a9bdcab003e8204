import unittest

from clamp import clamp


class ClampTest(unittest.TestCase):
    def test_inside(self):
        self.assertEqual(clamp(5, 0, 10), 5)

    def test_below(self):
        self.assertEqual(clamp(-3, 0, 10), 0)

    def test_above(self):
        self.assertEqual(clamp(42, 0, 10), 10)

    def test_bounds(self):
        self.assertEqual(clamp(0, 0, 10), 0)
        self.assertEqual(clamp(10, 0, 10), 10)

    def test_degenerate_interval(self):
        self.assertEqual(clamp(7, 3, 3), 3)

    def test_bad_interval(self):
        with self.assertRaises(ValueError):
            clamp(1, 5, 2)


if __name__ == "__main__":
    unittest.main()
