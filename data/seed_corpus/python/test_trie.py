import unittest

from trie import Trie


class TrieTest(unittest.TestCase):
    def setUp(self):
        self.trie = Trie()
        for word in ("car", "cart", "care", "cat", "dog"):
            self.trie.insert(word)

    def test_contains(self):
        self.assertTrue(self.trie.contains("car"))
        self.assertTrue(self.trie.contains("cat"))
        self.assertFalse(self.trie.contains("ca"))
        self.assertFalse(self.trie.contains("cars"))
        self.assertFalse(self.trie.contains("x"))

    def test_insert_twice(self):
        self.assertFalse(self.trie.insert("car"))
        self.assertTrue(self.trie.insert("ca"))
        self.assertTrue(self.trie.contains("ca"))

    def test_prefix(self):
        self.assertEqual(self.trie.words_with_prefix("car"), ["car", "care", "cart"])
        self.assertEqual(self.trie.words_with_prefix("ca"), ["car", "care", "cart", "cat"])
        self.assertEqual(self.trie.words_with_prefix("d"), ["dog"])
        self.assertEqual(self.trie.words_with_prefix("z"), [])
        self.assertEqual(len(self.trie.words_with_prefix("")), 5)


if __name__ == "__main__":
    unittest.main()
