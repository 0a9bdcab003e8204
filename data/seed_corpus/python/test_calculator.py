import unittest

from calculator import evaluate, tokenize


class CalculatorTest(unittest.TestCase):
    def test_tokenize(self):
        self.assertEqual(tokenize("12+(3*4)"), [12, "+", "(", 3, "*", 4, ")"])
        with self.assertRaises(ValueError):
            tokenize("2 ^ 3")

    def test_precedence(self):
        self.assertEqual(evaluate("1 + 2 * 3"), 7)
        self.assertEqual(evaluate("(1 + 2) * 3"), 9)
        self.assertEqual(evaluate("10 - 4 - 3"), 3)
        self.assertEqual(evaluate("100 / 10 / 5"), 2)
        self.assertEqual(evaluate("7 / 2"), 3)
        self.assertEqual(evaluate("2 * (3 + 4) - 5 * 2"), 4)

    def test_unary(self):
        self.assertEqual(evaluate("-3 + 5"), 2)
        self.assertEqual(evaluate("-(2 + 3) * 2"), -10)
        self.assertEqual(evaluate("4 - -1"), 5)

    def test_errors(self):
        for bad in ("1 +", "(1 + 2", "1 2", ")", ""):
            with self.assertRaises(ValueError, msg=bad):
                evaluate(bad)
        with self.assertRaises(ZeroDivisionError):
            evaluate("1 / (2 - 2)")


if __name__ == "__main__":
    unittest.main()
