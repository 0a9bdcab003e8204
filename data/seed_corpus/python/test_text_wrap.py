import unittest

from text_wrap import justify, wrap


class WrapTest(unittest.TestCase):
    def test_wrap(self):
        text = "the quick brown fox jumps over the lazy dog"
        self.assertEqual(wrap(text, 10), ["the quick", "brown fox", "jumps over", "the lazy", "dog"])
        self.assertEqual(wrap(text, 100), [text])
        self.assertEqual(wrap("", 5), [])
        self.assertEqual(wrap("a b", 3), ["a b"])
        self.assertEqual(wrap("a b", 2), ["a", "b"])

    def test_long_words(self):
        self.assertEqual(wrap("abcdefgh ij", 3), ["abc", "def", "gh", "ij"])
        self.assertEqual(wrap("xy abcdef", 3), ["xy", "abc", "def"])
        with self.assertRaises(ValueError):
            wrap("a", 0)

    def test_justify(self):
        self.assertEqual(justify("the quick", 12), "the    quick")
        self.assertEqual(justify("a b c", 8), "a   b  c")
        self.assertEqual(justify("one", 5), "one  ")
        self.assertEqual(len(justify("jumps over the", 20)), 20)


if __name__ == "__main__":
    unittest.main()
