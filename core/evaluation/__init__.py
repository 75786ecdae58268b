"""Measuring an intervention: multiple-choice scoring, known questions, loss added, the
evaluator with its disk memo, and the metrics it reports."""
