import unittest

from anagrams import group_anagrams, is_anagram, letter_counts


class AnagramTest(unittest.TestCase):
    def test_counts(self):
        self.assertEqual(letter_counts("Hello!"), {"h": 1, "e": 1, "l": 2, "o": 1})
        self.assertEqual(letter_counts(""), {})

    def test_is_anagram(self):
        self.assertTrue(is_anagram("listen", "silent"))
        self.assertTrue(is_anagram("Dormitory", "dirty room"))
        self.assertFalse(is_anagram("apple", "papel!x"))
        self.assertFalse(is_anagram("aab", "abb"))

    def test_group(self):
        words = ["eat", "tea", "tan", "ate", "nat", "bat"]
        self.assertEqual(group_anagrams(words), [["eat", "tea", "ate"], ["tan", "nat"], ["bat"]])
        self.assertEqual(group_anagrams([]), [])
        self.assertEqual(group_anagrams(["Ab", "ba"]), [["Ab", "ba"]])


if __name__ == "__main__":
    unittest.main()
