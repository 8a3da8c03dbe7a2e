"""Engines behind the metrics seam (orders → one row per customer)."""
