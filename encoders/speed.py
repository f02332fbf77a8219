"""``python -m encoders.speed`` still works:
the program now lives in :mod:`encoders.bench.speed`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("encoders.bench.speed", run_name="__main__", alter_sys=True)
