"""A prefix tree of words."""


class Trie:
    def __init__(self):
        self.children = {}
        self.terminal = False
        self.count = 0

    def insert(self, word):
        node = self
        for char in word:
            node = node.children.setdefault(char, Trie())
            node.count += 1
        if node.terminal:
            return False
        node.terminal = True
        return True

    def _node(self, prefix):
        node = self
        for char in prefix:
            node = node.children.get(char)
            if node is None:
                return None
        return node

    def contains(self, word):
        node = self._node(word)
        return node is not None and node.terminal

    def words_with_prefix(self, prefix):
        node = self._node(prefix)
        if node is None:
            return []
        found = []
        stack = [(node, prefix)]
        while stack:
            current, text = stack.pop()
            if current.terminal:
                found.append(text)
            for char, child in current.children.items():
                stack.append((child, text + char))
        return sorted(found)
