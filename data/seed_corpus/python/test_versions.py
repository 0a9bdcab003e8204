import unittest

from versions import compare_versions, latest, parse_version


class VersionTest(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(parse_version("1.2.0"), ([1, 2], ""))
        self.assertEqual(parse_version("0"), ([0], ""))
        self.assertEqual(parse_version("2.0-rc1"), ([2], "rc1"))
        for bad in ("", "1..2", "1.x", "-rc"):
            with self.assertRaises(ValueError):
                parse_version(bad)

    def test_compare(self):
        self.assertEqual(compare_versions("1.10", "1.9"), 1)
        self.assertEqual(compare_versions("1.9", "1.10"), -1)
        self.assertEqual(compare_versions("1.0.0", "1"), 0)
        self.assertEqual(compare_versions("2.0-rc1", "2.0"), -1)
        self.assertEqual(compare_versions("2.0", "2.0-rc1"), 1)
        self.assertEqual(compare_versions("2.0-rc1", "2.0-rc2"), -1)
        self.assertEqual(compare_versions("2.0-rc2", "2.0-rc1"), 1)
        self.assertEqual(compare_versions("3.0-b", "3.0-b"), 0)

    def test_latest(self):
        self.assertEqual(latest(["1.2", "1.10", "1.9.9"]), "1.10")
        self.assertEqual(latest(["1.0-rc1", "1.0", "0.9"]), "1.0")
        self.assertIsNone(latest([]))


if __name__ == "__main__":
    unittest.main()
