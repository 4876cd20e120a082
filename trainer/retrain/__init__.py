"""Retraining from operators' labels: the label store becomes training data, a better model is promoted."""
