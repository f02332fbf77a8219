"""``python -m learning.benchmark`` still works:
the program now lives in :mod:`learning.bench.harness`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("learning.bench.harness", run_name="__main__", alter_sys=True)
