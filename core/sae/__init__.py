"""The SAE itself: its architecture's adapter (encode in full, the selected latents only, or
sparse; decoder directions), training our own, and its health on held-out text."""
