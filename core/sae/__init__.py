"""The SAE itself: encoding (full, selected columns, sparse), training our own, and its
health on held-out text."""
