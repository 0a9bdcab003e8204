import unittest

from ini_parser import get_int, parse_ini

TEXT = """
; comment
[server]
Host = example.org
port=8080
# another comment

[paths]
root = /var/www = site
[server]
timeout = 30
"""


class IniTest(unittest.TestCase):
    def test_parse(self):
        parsed = parse_ini(TEXT)
        self.assertEqual(parsed["server"], {"host": "example.org", "port": "8080", "timeout": "30"})
        self.assertEqual(parsed["paths"], {"root": "/var/www = site"})
        self.assertEqual(list(parsed), ["server", "paths"])
        self.assertEqual(parse_ini(""), {})
        self.assertEqual(parse_ini("[empty]"), {"empty": {}})

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "line 1: key outside"):
            parse_ini("a = 1")
        with self.assertRaisesRegex(ValueError, "line 2: expected"):
            parse_ini("[s]\nnonsense")
        with self.assertRaisesRegex(ValueError, "line 1: empty section"):
            parse_ini("[ ]")

    def test_get_int(self):
        parsed = parse_ini(TEXT)
        self.assertEqual(get_int(parsed, "server", "port"), 8080)
        self.assertEqual(get_int(parsed, "server", "missing", 5), 5)
        self.assertEqual(get_int(parsed, "nope", "port"), 0)


if __name__ == "__main__":
    unittest.main()
