"""Which workspace: its config, where its files live, the hub probe, and the keys and atomic
writes of everything it records on disk."""
