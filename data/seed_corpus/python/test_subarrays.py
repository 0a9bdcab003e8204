import unittest

from subarrays import max_subarray, prefix_sums, range_sum, two_sum


class SubarrayTest(unittest.TestCase):
    def test_max_subarray(self):
        self.assertEqual(max_subarray([-2, 1, -3, 4, -1, 2, 1, -5, 4]), (6, 3, 7))
        self.assertEqual(max_subarray([-3, -1, -2]), (-1, 1, 2))
        self.assertEqual(max_subarray([5]), (5, 0, 1))
        self.assertEqual(max_subarray([1, 2, 3]), (6, 0, 3))
        self.assertEqual(max_subarray([2, -1, 2]), (3, 0, 3))
        with self.assertRaises(ValueError):
            max_subarray([])

    def test_two_sum(self):
        self.assertEqual(two_sum([2, 7, 11, 15], 9), (0, 1))
        self.assertEqual(two_sum([3, 2, 4], 6), (1, 2))
        self.assertEqual(two_sum([3, 3], 6), (0, 1))
        self.assertEqual(two_sum([1, 3, 3, 5], 6), (1, 2))
        self.assertIsNone(two_sum([1, 2], 7))

    def test_prefix(self):
        values = [3, -1, 4, 1, -5]
        sums = prefix_sums(values)
        self.assertEqual(sums, [0, 3, 2, 6, 7, 2])
        for start in range(len(values)):
            for end in range(start, len(values) + 1):
                self.assertEqual(range_sum(sums, start, end), sum(values[start:end]))


if __name__ == "__main__":
    unittest.main()
