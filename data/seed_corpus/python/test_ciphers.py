import unittest

from ciphers import caesar, shift_letter, vigenere


class CipherTest(unittest.TestCase):
    def test_shift_letter(self):
        self.assertEqual(shift_letter("a", 1), "b")
        self.assertEqual(shift_letter("z", 1), "a")
        self.assertEqual(shift_letter("A", 25), "Z")
        self.assertEqual(shift_letter("Z", 2), "B")
        self.assertEqual(shift_letter("!", 5), "!")
        self.assertEqual(shift_letter("b", -3), "y")

    def test_caesar(self):
        self.assertEqual(caesar("Hello, World!", 3), "Khoor, Zruog!")
        self.assertEqual(caesar(caesar("Round Trip", 11), -11), "Round Trip")
        self.assertEqual(caesar("abc", 26), "abc")

    def test_vigenere(self):
        self.assertEqual(vigenere("ATTACK AT DAWN", "LEMON"), "LXFOPV EF RNHR")
        self.assertEqual(vigenere("LXFOPV EF RNHR", "lemon", decrypt=True), "ATTACK AT DAWN")
        self.assertEqual(vigenere("abc", "b"), "bcd")
        with self.assertRaises(ValueError):
            vigenere("abc", "k3y")


if __name__ == "__main__":
    unittest.main()
