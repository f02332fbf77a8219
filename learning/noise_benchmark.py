"""``python -m learning.noise_benchmark`` still works:
the program now lives in :mod:`learning.bench.noise`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("learning.bench.noise", run_name="__main__", alter_sys=True)
