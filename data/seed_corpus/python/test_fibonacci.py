import unittest

from fibonacci import fib, fib_pair, fib_sequence


class FibonacciTest(unittest.TestCase):
    def test_small(self):
        self.assertEqual([fib(n) for n in range(10)], [0, 1, 1, 2, 3, 5, 8, 13, 21, 34])

    def test_large(self):
        self.assertEqual(fib(50), 12586269025)

    def test_negative(self):
        with self.assertRaises(ValueError):
            fib(-1)

    def test_doubling_matches(self):
        for n in range(40):
            self.assertEqual(fib_pair(n), (fib(n), fib(n + 1)))
        self.assertEqual(fib_pair(100)[0], 354224848179261915075)

    def test_sequence(self):
        self.assertEqual(fib_sequence(0), [])
        self.assertEqual(fib_sequence(1), [0])
        self.assertEqual(fib_sequence(7), [0, 1, 1, 2, 3, 5, 8])


if __name__ == "__main__":
    unittest.main()
