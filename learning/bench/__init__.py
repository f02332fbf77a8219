"""Programs about the learning library: the loop harness, speed and quality benchmarks.

Each module has a ``python -m learning.bench.<name>`` entry point; the library itself never
imports from here.
"""
