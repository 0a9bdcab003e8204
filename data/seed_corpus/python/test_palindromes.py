import unittest

from palindromes import is_palindrome, longest_palindrome


class PalindromeTest(unittest.TestCase):
    def test_is_palindrome(self):
        self.assertTrue(is_palindrome("A man, a plan, a canal: Panama"))
        self.assertTrue(is_palindrome(""))
        self.assertTrue(is_palindrome("x"))
        self.assertTrue(is_palindrome("abba"))
        self.assertFalse(is_palindrome("abca"))
        self.assertFalse(is_palindrome("ab"))
        self.assertFalse(is_palindrome("race a car"))

    def test_longest(self):
        self.assertEqual(longest_palindrome("babad"), "bab")
        self.assertEqual(longest_palindrome("cbbd"), "bb")
        self.assertEqual(longest_palindrome("a"), "a")
        self.assertEqual(longest_palindrome(""), "")
        self.assertEqual(longest_palindrome("forgeeksskeegfor"), "geeksskeeg")
        self.assertEqual(longest_palindrome("abcde"), "a")
        self.assertEqual(longest_palindrome("xyzracecar"), "racecar")


if __name__ == "__main__":
    unittest.main()
