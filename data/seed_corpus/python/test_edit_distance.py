import unittest

from edit_distance import lcs, levenshtein


class EditDistanceTest(unittest.TestCase):
    def test_levenshtein(self):
        self.assertEqual(levenshtein("kitten", "sitting"), 3)
        self.assertEqual(levenshtein("", "abc"), 3)
        self.assertEqual(levenshtein("abc", ""), 3)
        self.assertEqual(levenshtein("flaw", "lawn"), 2)
        self.assertEqual(levenshtein("same", "same"), 0)
        self.assertEqual(levenshtein("ab", "ba"), 2)

    def test_lcs(self):
        self.assertEqual(lcs("ABCBDAB", "BDCABA"), "BDAB")
        self.assertEqual(lcs("abc", "abc"), "abc")
        self.assertEqual(lcs("abc", "def"), "")
        self.assertEqual(lcs("", "x"), "")
        self.assertEqual(len(lcs("AGGTAB", "GXTXAYB")), 4)
        self.assertEqual(lcs("xaybz", "ab"), "ab")


if __name__ == "__main__":
    unittest.main()
