import unittest

from matrix import identity, multiply, trace, transpose


class MatrixTest(unittest.TestCase):
    def test_identity(self):
        self.assertEqual(identity(1), [[1]])
        self.assertEqual(identity(3), [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
        self.assertEqual(identity(0), [])

    def test_transpose(self):
        self.assertEqual(transpose([[1, 2, 3], [4, 5, 6]]), [[1, 4], [2, 5], [3, 6]])
        self.assertEqual(transpose([]), [])
        self.assertEqual(transpose([[7]]), [[7]])

    def test_multiply(self):
        a = [[1, 2], [3, 4], [5, 6]]
        b = [[7, 8, 9], [10, 11, 12]]
        self.assertEqual(multiply(a, b), [[27, 30, 33], [61, 68, 75], [95, 106, 117]])
        self.assertEqual(multiply(identity(2), [[2, 3], [4, 5]]), [[2, 3], [4, 5]])
        with self.assertRaises(ValueError):
            multiply(a, a)
        with self.assertRaises(ValueError):
            multiply([], b)

    def test_trace(self):
        self.assertEqual(trace([[1, 2], [3, 4]]), 5)
        self.assertEqual(trace(identity(4)), 4)
        self.assertEqual(trace([[2, 0, 0], [0, 3, 0], [0, 0, 9]]), 14)


if __name__ == "__main__":
    unittest.main()
