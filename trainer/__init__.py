"""Offline training of AGAD models: data sets, training loops, evaluation, the model registry."""
