"""Order matching: the multiple-knapsack clearing model and its solver backends."""
