import unittest

from intervals import merge_intervals, overlaps, total_covered


class IntervalTest(unittest.TestCase):
    def test_merge(self):
        self.assertEqual(merge_intervals([(1, 3), (2, 6), (8, 10), (15, 18)]), [(1, 6), (8, 10), (15, 18)])
        self.assertEqual(merge_intervals([(1, 4), (4, 5)]), [(1, 5)])
        self.assertEqual(merge_intervals([(5, 7), (1, 2)]), [(1, 2), (5, 7)])
        self.assertEqual(merge_intervals([(1, 10), (2, 3)]), [(1, 10)])
        self.assertEqual(merge_intervals([]), [])
        self.assertEqual(merge_intervals([(3, 3)]), [(3, 3)])

    def test_bad(self):
        with self.assertRaises(ValueError):
            merge_intervals([(5, 1)])

    def test_total(self):
        self.assertEqual(total_covered([(1, 3), (2, 4), (10, 10)]), 5)
        self.assertEqual(total_covered([]), 0)

    def test_overlaps(self):
        self.assertTrue(overlaps((1, 5), (5, 9)))
        self.assertTrue(overlaps((3, 4), (1, 10)))
        self.assertFalse(overlaps((1, 2), (3, 4)))
        self.assertFalse(overlaps((7, 9), (1, 6)))


if __name__ == "__main__":
    unittest.main()
