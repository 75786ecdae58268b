"""Sparse SAE activation caches on disk: what a cache depends on (spec), building it in
resumable shards, folding shards into the feature-major copy, merging shards built apart,
and reading it (format: docs/cache-format.md)."""
