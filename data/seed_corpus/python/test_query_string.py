import unittest

from query_string import build_query, parse_query, quote, unquote


class QueryTest(unittest.TestCase):
    def test_unquote(self):
        self.assertEqual(unquote("a+b%20c"), "a b c")
        self.assertEqual(unquote("%C3%A9t%C3%A9"), "été")
        self.assertEqual(unquote("100%"), "100%")
        self.assertEqual(unquote("%zz"), "%zz")
        self.assertEqual(unquote("%41"), "A")

    def test_quote(self):
        self.assertEqual(quote("a b&c"), "a%20b%26c")
        self.assertEqual(quote("été"), "%C3%A9t%C3%A9")
        self.assertEqual(quote("safe-._~"), "safe-._~")

    def test_parse(self):
        self.assertEqual(parse_query("?a=1&b=x+y&a=2&flag&&c="),
                         {"a": ["1", "2"], "b": ["x y"], "flag": [""], "c": [""]})
        self.assertEqual(parse_query(""), {})

    def test_round_trip(self):
        params = {"q": ["fish & chips"], "page": ["2"], "tag": ["a", "b/c"]}
        self.assertEqual(parse_query(build_query(params)), params)


if __name__ == "__main__":
    unittest.main()
