import unittest

from spiral import rotate_clockwise, spiral_order


class SpiralTest(unittest.TestCase):
    def test_square(self):
        self.assertEqual(spiral_order([[1, 2, 3], [4, 5, 6], [7, 8, 9]]), [1, 2, 3, 6, 9, 8, 7, 4, 5])

    def test_rectangles(self):
        self.assertEqual(spiral_order([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]),
                         [1, 2, 3, 4, 8, 12, 11, 10, 9, 5, 6, 7])
        self.assertEqual(spiral_order([[1], [2], [3]]), [1, 2, 3])
        self.assertEqual(spiral_order([[1, 2, 3]]), [1, 2, 3])
        self.assertEqual(spiral_order([[1, 2], [3, 4], [5, 6]]), [1, 2, 4, 6, 5, 3])

    def test_empty(self):
        self.assertEqual(spiral_order([]), [])

    def test_rotate(self):
        self.assertEqual(rotate_clockwise([[1, 2], [3, 4]]), [[3, 1], [4, 2]])
        self.assertEqual(rotate_clockwise([[1, 2, 3]]), [[1], [2], [3]])


if __name__ == "__main__":
    unittest.main()
