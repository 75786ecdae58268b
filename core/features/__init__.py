"""Finding features: statistics from the caches, the paper's selection, gradient attribution,
activation examples, the search view, and where a run's features come from."""
