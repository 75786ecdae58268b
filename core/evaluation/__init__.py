"""Measuring an intervention: the question protocol (sample and selection/report split),
multiple-choice and k-shot scoring, known questions, loss added, the evaluator with its disk
memo, the metrics it reports and their text rows."""
