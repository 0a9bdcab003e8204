import unittest

from case_convert import split_words, to_camel, to_kebab, to_snake, to_title


class CaseTest(unittest.TestCase):
    def test_split(self):
        self.assertEqual(split_words("parseHttpResponse"), ["parse", "http", "response"])
        self.assertEqual(split_words("max_retry-count now"), ["max", "retry", "count", "now"])
        self.assertEqual(split_words("__x__"), ["x"])
        self.assertEqual(split_words(""), [])

    def test_conversions(self):
        self.assertEqual(to_snake("parseHttpResponse"), "parse_http_response")
        self.assertEqual(to_camel("parse_http_response"), "parseHttpResponse")
        self.assertEqual(to_camel("Already"), "already")
        self.assertEqual(to_camel(""), "")
        self.assertEqual(to_kebab("HelloWorld2Go"), "hello-world2-go")

    def test_title(self):
        self.assertEqual(to_title("the_lord_of_the_rings"), "The Lord of the Rings")
        self.assertEqual(to_title("an-apple a day"), "An Apple a Day")
        self.assertEqual(to_title("x"), "X")


if __name__ == "__main__":
    unittest.main()
