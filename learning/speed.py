"""``python -m learning.speed`` still works:
the program now lives in :mod:`learning.bench.speed`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("learning.bench.speed", run_name="__main__", alter_sys=True)
