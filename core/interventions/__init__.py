"""Edits of SAE latents at the hook with the error term kept (clamp, scale, ablate), the DSG
gate that decides which sequences are edited and its calibration, and generation under an
edit."""
