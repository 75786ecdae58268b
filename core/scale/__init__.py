"""Scale out on Ray: cache builds, sweeps, screening and the known-question filter on Ray
actors that each hold the model and SAE, with results identical to the serial path (which
stays the default; Ray is imported only when one of these runs). See docs/scale-out.md."""
