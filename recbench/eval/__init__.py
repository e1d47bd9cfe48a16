"""Metrics (pure functions) and the evaluators that apply them."""
