import unittest

from run_length import decode, encode


class RunLengthTest(unittest.TestCase):
    def test_encode(self):
        self.assertEqual(encode("aaabccdddd"), "3a1b2c4d")
        self.assertEqual(encode("a"), "1a")
        self.assertEqual(encode(""), "")
        self.assertEqual(encode("abab"), "1a1b1a1b")
        self.assertEqual(encode("z" * 12), "12z")

    def test_decode(self):
        self.assertEqual(decode("3a1b2c4d"), "aaabccdddd")
        self.assertEqual(decode("12z"), "z" * 12)
        self.assertEqual(decode(""), "")

    def test_round_trip(self):
        for text in ("hello", "mississippi", "    x", "aabbbcccc"):
            self.assertEqual(decode(encode(text)), text)

    def test_errors(self):
        with self.assertRaises(ValueError):
            decode("a")
        with self.assertRaises(ValueError):
            decode("2a3")


if __name__ == "__main__":
    unittest.main()
