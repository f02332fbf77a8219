"""``python -m learning.neighbors_speed`` still works:
the program now lives in :mod:`learning.bench.neighbors_speed`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("learning.bench.neighbors_speed", run_name="__main__", alter_sys=True)
