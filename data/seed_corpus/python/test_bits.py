import unittest

from bits import gray_code, is_power_of_two, next_power_of_two, popcount, reverse_bits


class BitsTest(unittest.TestCase):
    def test_popcount(self):
        for n in range(300):
            self.assertEqual(popcount(n), bin(n).count("1"))

    def test_power_of_two(self):
        self.assertEqual([n for n in range(-2, 70) if is_power_of_two(n)], [1, 2, 4, 8, 16, 32, 64])

    def test_reverse(self):
        self.assertEqual(reverse_bits(0b00000001), 0b10000000)
        self.assertEqual(reverse_bits(0b10110000), 0b00001101)
        self.assertEqual(reverse_bits(0b0011, width=4), 0b1100)
        self.assertEqual(reverse_bits(0b110, width=3), 0b011)

    def test_next_power(self):
        self.assertEqual([next_power_of_two(n) for n in (0, 1, 2, 3, 5, 8, 9, 1000)], [1, 1, 2, 4, 8, 8, 16, 1024])

    def test_gray(self):
        codes = [gray_code(n) for n in range(16)]
        self.assertEqual(codes[:5], [0, 1, 3, 2, 6])
        for a, b in zip(codes, codes[1:]):
            self.assertEqual(popcount(a ^ b), 1)
        self.assertEqual(len(set(codes)), 16)


if __name__ == "__main__":
    unittest.main()
