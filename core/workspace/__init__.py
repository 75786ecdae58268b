"""The `Workspace`: one config's model, SAE, data and token rows, each loaded on first use."""
