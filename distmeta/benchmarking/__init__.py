"""Throughput benchmarks: meta-steps timed phase by phase, across worker counts (`distmeta bench`)."""
