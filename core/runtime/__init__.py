"""Running the model: forward passes batched and stopped where needed, logits at chosen
positions only, shared prefixes run as token trees or a key-value cache, background runs."""
