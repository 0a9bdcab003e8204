import unittest

from pascal import binomial, pascal_rows


class PascalTest(unittest.TestCase):
    def test_rows(self):
        self.assertEqual(pascal_rows(0), [])
        self.assertEqual(pascal_rows(1), [[1]])
        self.assertEqual(pascal_rows(5), [[1], [1, 1], [1, 2, 1], [1, 3, 3, 1], [1, 4, 6, 4, 1]])

    def test_binomial(self):
        self.assertEqual(binomial(5, 2), 10)
        self.assertEqual(binomial(10, 0), 1)
        self.assertEqual(binomial(10, 10), 1)
        self.assertEqual(binomial(52, 5), 2598960)
        self.assertEqual(binomial(3, 4), 0)
        self.assertEqual(binomial(3, -1), 0)

    def test_rows_match_binomial(self):
        for n, row in enumerate(pascal_rows(12)):
            self.assertEqual(row, [binomial(n, k) for k in range(n + 1)])


if __name__ == "__main__":
    unittest.main()
