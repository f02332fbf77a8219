"""``python -m learning.knn_feature_benchmark`` still works:
the program now lives in :mod:`learning.bench.knn_feature`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("learning.bench.knn_feature", run_name="__main__", alter_sys=True)
