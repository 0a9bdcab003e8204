import unittest

from brackets import first_error, is_balanced, max_depth


class BracketTest(unittest.TestCase):
    def test_balanced(self):
        for text in ("", "()", "([]{})", "a(b[c]{d}e)f", "((()))"):
            self.assertTrue(is_balanced(text), text)

    def test_unbalanced(self):
        self.assertEqual(first_error("(]"), 1)
        self.assertEqual(first_error("())"), 2)
        self.assertEqual(first_error("(()"), 3)
        self.assertEqual(first_error("x}"), 1)
        self.assertEqual(first_error("{[(])}"), 3)
        self.assertFalse(is_balanced("(("))

    def test_depth(self):
        self.assertEqual(max_depth(""), 0)
        self.assertEqual(max_depth("()()"), 1)
        self.assertEqual(max_depth("([{}])"), 3)
        self.assertEqual(max_depth("(a)(b(c))"), 2)


if __name__ == "__main__":
    unittest.main()
