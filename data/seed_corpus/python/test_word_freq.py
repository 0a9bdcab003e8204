import unittest

from word_freq import frequencies, tokenize, top_words

TEXT = "The cat and the hat. The cat sat! A hat, a cat; don't 'quote' me."


class WordFreqTest(unittest.TestCase):
    def test_tokenize(self):
        self.assertEqual(tokenize("Hello, World! It's 'quoted'."), ["hello", "world", "it's", "quoted"])
        self.assertEqual(tokenize("123 ... ''"), [])

    def test_frequencies(self):
        counts = frequencies(TEXT)
        self.assertEqual(counts["the"], 3)
        self.assertEqual(counts["cat"], 3)
        self.assertEqual(counts["don't"], 1)
        self.assertEqual(counts["a"], 2)
        self.assertNotIn("a", frequencies(TEXT, skip_stop_words=True))

    def test_top(self):
        self.assertEqual(top_words(TEXT, 3), [("cat", 3), ("the", 3), ("a", 2)])
        self.assertEqual(top_words(TEXT, 2, skip_stop_words=True), [("cat", 3), ("hat", 2)])
        self.assertEqual(top_words("", 5), [])
        self.assertEqual(len(top_words(TEXT, 100)), len(frequencies(TEXT)))


if __name__ == "__main__":
    unittest.main()
