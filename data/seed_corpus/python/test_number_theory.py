import unittest

from number_theory import gcd, is_prime, lcm, primes_up_to


class NumberTheoryTest(unittest.TestCase):
    def test_gcd(self):
        self.assertEqual(gcd(12, 18), 6)
        self.assertEqual(gcd(17, 5), 1)
        self.assertEqual(gcd(0, 9), 9)
        self.assertEqual(gcd(-12, 8), 4)
        self.assertEqual(gcd(100, 75), 25)

    def test_lcm(self):
        self.assertEqual(lcm(4, 6), 12)
        self.assertEqual(lcm(0, 6), 0)
        self.assertEqual(lcm(7, 0), 0)
        self.assertEqual(lcm(-3, 5), 15)
        self.assertEqual(lcm(21, 6), 42)

    def test_is_prime(self):
        primes = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47}
        for n in range(-3, 50):
            self.assertEqual(is_prime(n), n in primes, n)
        self.assertFalse(is_prime(49))
        self.assertFalse(is_prime(121))

    def test_sieve(self):
        self.assertEqual(primes_up_to(1), [])
        self.assertEqual(primes_up_to(2), [2])
        self.assertEqual(primes_up_to(30), [2, 3, 5, 7, 11, 13, 17, 19, 23, 29])
        self.assertEqual(primes_up_to(49), [n for n in range(50) if is_prime(n)])
        self.assertEqual(len(primes_up_to(100)), 25)


if __name__ == "__main__":
    unittest.main()
