"""Benchmarks against peers (``make bench``); numbers are reported side by side, never asserted."""
