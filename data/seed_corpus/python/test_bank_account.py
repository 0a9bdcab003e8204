import unittest

from bank_account import Account, InsufficientFunds


class AccountTest(unittest.TestCase):
    def test_deposit_withdraw(self):
        account = Account("ann", 100)
        self.assertEqual(account.deposit(50), 150)
        self.assertEqual(account.withdraw(30), 120)
        self.assertEqual(account.history, [("deposit", 50), ("withdraw", 30)])
        self.assertEqual(account.total("deposit"), 50)
        self.assertEqual(account.total("withdraw"), 30)

    def test_limits(self):
        account = Account("bob", 10, overdraft=20)
        self.assertEqual(account.withdraw(30), -20)
        with self.assertRaises(InsufficientFunds):
            account.withdraw(1)
        self.assertEqual(account.balance, -20)
        exact = Account("cy", 5)
        self.assertEqual(exact.withdraw(5), 0)

    def test_bad_amounts(self):
        account = Account("dee", 10)
        for bad in (0, -5):
            with self.assertRaises(ValueError):
                account.deposit(bad)
            with self.assertRaises(ValueError):
                account.withdraw(bad)
        with self.assertRaises(ValueError):
            Account("eve", -1)
        with self.assertRaises(ValueError):
            Account("eve", 0, overdraft=-1)
        self.assertEqual(account.history, [])

    def test_transfer(self):
        a, b = Account("a", 50), Account("b")
        a.transfer(b, 20)
        self.assertEqual((a.balance, b.balance), (30, 20))
        with self.assertRaises(InsufficientFunds):
            b.transfer(a, 21)
        self.assertEqual((a.balance, b.balance), (30, 20))


if __name__ == "__main__":
    unittest.main()
