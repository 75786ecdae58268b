"""Sweeps over thresholds, n, c and the gate: the grid and its plan, the run, the Pareto
plot's series, the published reference points, and the paper's table reproduced."""
