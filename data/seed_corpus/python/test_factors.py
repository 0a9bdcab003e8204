import unittest

from factors import divisors, is_perfect, prime_factors


class FactorsTest(unittest.TestCase):
    def test_prime_factors(self):
        self.assertEqual(prime_factors(2), [2])
        self.assertEqual(prime_factors(12), [2, 2, 3])
        self.assertEqual(prime_factors(97), [97])
        self.assertEqual(prime_factors(360), [2, 2, 2, 3, 3, 5])
        self.assertEqual(prime_factors(9), [3, 3])
        self.assertEqual(prime_factors(2 * 3 * 5 * 7 * 11 * 13), [2, 3, 5, 7, 11, 13])
        self.assertEqual(prime_factors(49), [7, 7])
        with self.assertRaises(ValueError):
            prime_factors(1)

    def test_divisors(self):
        self.assertEqual(divisors(1), [1])
        self.assertEqual(divisors(12), [1, 2, 3, 4, 6, 12])
        self.assertEqual(divisors(16), [1, 2, 4, 8, 16])
        self.assertEqual(divisors(13), [1, 13])

    def test_perfect(self):
        self.assertEqual([n for n in range(1, 500) if is_perfect(n)], [6, 28, 496])


if __name__ == "__main__":
    unittest.main()
