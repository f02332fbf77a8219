"""Programs about the encoders: speed, memory and embedding-quality benchmarks.

Each module has a ``python -m encoders.bench.<name>`` entry point.
"""
