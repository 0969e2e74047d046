"""Example user code that the shipped example spaces name: model and data factories and
training functions a user copies and adapts (see docs/own-training.md)."""
