"""Benchmark harness for gateway-engine: ``python -m bench`` (see bench/README.md)."""
