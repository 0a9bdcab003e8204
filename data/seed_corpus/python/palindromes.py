"""Palindrome checks and the longest palindromic substring."""


def is_palindrome(text):
    cleaned = [c.lower() for c in text if c.isalnum()]
    left, right = 0, len(cleaned) - 1
    while left < right:
        if cleaned[left] != cleaned[right]:
            return False
        left += 1
        right -= 1
    return True


def longest_palindrome(text):
    best_start, best_len = 0, 0
    for center in range(len(text)):
        for left, right in ((center, center), (center, center + 1)):
            while left >= 0 and right < len(text) and text[left] == text[right]:
                left -= 1
                right += 1
            length = right - left - 1
            if length > best_len:
                best_start, best_len = left + 1, length
    return text[best_start:best_start + best_len]
