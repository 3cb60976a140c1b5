"""Aggregation: one public route answered by several backends, called concurrently or in sequence and merged."""
