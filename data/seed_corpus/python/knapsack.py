"""Dynamic programming classics: 0/1 knapsack and coin change."""


def knapsack(items, capacity):
    """Best total value of (weight, value) items within capacity, each item used at most once."""
    best = [0] * (capacity + 1)
    for weight, value in items:
        for room in range(capacity, weight - 1, -1):
            best[room] = max(best[room], best[room - weight] + value)
    return best[capacity]


def min_coins(coins, amount):
    """Fewest coins summing to amount, or -1 when impossible."""
    inf = amount + 1
    fewest = [0] + [inf] * amount
    for total in range(1, amount + 1):
        for coin in coins:
            if coin <= total and fewest[total - coin] + 1 < fewest[total]:
                fewest[total] = fewest[total - coin] + 1
    return fewest[amount] if fewest[amount] < inf else -1


def count_ways(coins, amount):
    ways = [1] + [0] * amount
    for coin in coins:
        for total in range(coin, amount + 1):
            ways[total] += ways[total - coin]
    return ways[amount]
