"""Measuring an intervention: multiple-choice scoring, known questions, loss added, the
evaluator with its disk memo, the metrics it reports, and sweeps and screening."""
