"""Scoring a model on a dataset (accuracy, plots) and the evaluate stage."""
