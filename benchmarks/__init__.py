"""Load and latency benchmarks for signoff, side by side with peers: see docs/performance.md."""
