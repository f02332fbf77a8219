"""``python -m encoders.quality`` still works:
the program now lives in :mod:`encoders.bench.quality`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("encoders.bench.quality", run_name="__main__", alter_sys=True)
