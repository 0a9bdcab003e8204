import unittest

from binary_search import binary_search, lower_bound


class BinarySearchTest(unittest.TestCase):
    def test_found_everywhere(self):
        items = [1, 3, 5, 7, 9, 11]
        for index, value in enumerate(items):
            self.assertEqual(binary_search(items, value), index)

    def test_missing(self):
        items = [1, 3, 5, 7, 9, 11]
        for value in (0, 2, 4, 6, 8, 10, 12):
            self.assertEqual(binary_search(items, value), -1)

    def test_empty_and_single(self):
        self.assertEqual(binary_search([], 3), -1)
        self.assertEqual(binary_search([3], 3), 0)
        self.assertEqual(binary_search([3], 4), -1)

    def test_lower_bound(self):
        items = [1, 2, 2, 2, 5, 8]
        self.assertEqual(lower_bound(items, 0), 0)
        self.assertEqual(lower_bound(items, 1), 0)
        self.assertEqual(lower_bound(items, 2), 1)
        self.assertEqual(lower_bound(items, 3), 4)
        self.assertEqual(lower_bound(items, 8), 5)
        self.assertEqual(lower_bound(items, 9), 6)
        self.assertEqual(lower_bound([], 9), 0)


if __name__ == "__main__":
    unittest.main()
