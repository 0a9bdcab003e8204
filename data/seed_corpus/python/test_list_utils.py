import unittest

from list_utils import chunk, dedupe, flatten, rotate, windows


class ListUtilsTest(unittest.TestCase):
    def test_chunk(self):
        self.assertEqual(chunk([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]])
        self.assertEqual(chunk([1, 2], 5), [[1, 2]])
        self.assertEqual(chunk([], 3), [])
        with self.assertRaises(ValueError):
            chunk([1], 0)

    def test_flatten(self):
        self.assertEqual(flatten([1, [2, [3, [4]], 5], [], 6]), [1, 2, 3, 4, 5, 6])
        self.assertEqual(flatten([]), [])

    def test_dedupe(self):
        self.assertEqual(dedupe([3, 1, 3, 2, 1]), [3, 1, 2])
        self.assertEqual(dedupe("banana"), ["b", "a", "n"])

    def test_rotate(self):
        self.assertEqual(rotate([1, 2, 3, 4], 1), [4, 1, 2, 3])
        self.assertEqual(rotate([1, 2, 3, 4], 6), [3, 4, 1, 2])
        self.assertEqual(rotate([1, 2, 3], -1), [2, 3, 1])
        self.assertEqual(rotate([1, 2, 3], 3), [1, 2, 3])
        self.assertEqual(rotate([], 2), [])

    def test_windows(self):
        self.assertEqual(windows([1, 2, 3, 4], 2), [[1, 2], [2, 3], [3, 4]])
        self.assertEqual(windows([1, 2], 2), [[1, 2]])
        self.assertEqual(windows([1], 2), [])


if __name__ == "__main__":
    unittest.main()
