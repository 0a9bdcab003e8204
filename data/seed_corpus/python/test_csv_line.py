import unittest

from csv_line import parse_csv_line


class CsvLineTest(unittest.TestCase):
    def test_plain(self):
        self.assertEqual(parse_csv_line("a,b,c"), ["a", "b", "c"])
        self.assertEqual(parse_csv_line(""), [""])
        self.assertEqual(parse_csv_line("a,,c,"), ["a", "", "c", ""])

    def test_quotes(self):
        self.assertEqual(parse_csv_line('"a,b",c'), ["a,b", "c"])
        self.assertEqual(parse_csv_line('"say ""hi""",x'), ['say "hi"', "x"])
        self.assertEqual(parse_csv_line('""'), [""])
        self.assertEqual(parse_csv_line('x,"",y'), ["x", "", "y"])

    def test_delimiter(self):
        self.assertEqual(parse_csv_line("a;b,c", delimiter=";"), ["a", "b,c"])

    def test_unterminated(self):
        with self.assertRaises(ValueError):
            parse_csv_line('"abc')


if __name__ == "__main__":
    unittest.main()
