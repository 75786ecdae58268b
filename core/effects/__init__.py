"""What clamping one feature does (METHOD §13): a first-order estimate for every feature and
the measured loss added for the top candidates, on forget and retain rows no evaluation
reports on."""
