"""Side-by-side benchmarks: run ``python -m benchmarks [--quick]``."""
