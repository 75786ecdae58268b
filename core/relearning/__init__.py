"""Relearning robustness (METHOD §14): fine-tune a copy of the model on forget-domain text with
the edit active, and measure how much of the unlearning survives."""
