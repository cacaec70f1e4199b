"""Benchmark construction (sources -> build -> store) and the read-only Benchmark view."""
