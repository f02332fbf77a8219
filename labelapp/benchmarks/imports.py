"""Benchmark: import a dataset folder into the configured database, then load its features.

Measures wall time per phase (validation, write), cases/s and events/s, this process's peak RSS
and CPU time, the PostgreSQL backend's CPU time (read from ``/proc`` when the server is local),
and the time to load every feature of the snapshot as one float32 NumPy matrix.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from django.db import connection, transaction

from labelapp.models import Dataset
from labelapp.selectors.datasets import snapshot_dir_for
from labelapp.services.imports import dataset_delete_rows, dataset_import

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _backend_cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU of a local PostgreSQL backend, or None when /proc cannot tell."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def load_feature_matrix(snapshot: Path) -> tuple[np.ndarray, list[str]]:
    """Every case feature of a snapshot as a float32 matrix (n_cases, n_features).

    Numeric columns as they are; categorical text columns as their dictionary codes.
    """
    schema = json.loads((snapshot / "schema.json").read_text())["cases"]
    names = list(schema["numeric"]) + list(schema["categorical"])
    table = pq.read_table(snapshot / "cases.parquet", columns=names)
    matrix = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        column = table[name]
        if column.type in ("string", "large_string"):
            column = pc.dictionary_encode(column).combine_chunks().indices
        matrix[:, j] = column.to_numpy()
    return matrix, names


def run(source: Path, *, name: str, out_dir: Path) -> dict:
    phases: dict[str, float] = {}
    marks = {"start": time.perf_counter()}

    def progress(stage: str, done: int, total: int | None) -> None:
        now = time.perf_counter()
        marks.setdefault(stage, now)
        marks[f"{stage}:end"] = now

    old = Dataset.objects.filter(name=name).first()
    if old is not None:  # not part of the measurement
        with transaction.atomic():
            dataset_delete_rows(old)
            old.delete()
    marks["start"] = time.perf_counter()
    backend_pid = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend_pid = cursor.fetchone()[0]
    backend_cpu_before = _backend_cpu_seconds(backend_pid)
    cpu_before = time.process_time()
    dataset = dataset_import(name=name, source_dir=source, progress=progress)
    total = time.perf_counter() - marks["start"]
    backend_cpu_after = _backend_cpu_seconds(backend_pid)
    previous_end = marks["start"]
    for stage in ("validating cases", "validating events", "importing cases", "importing events"):
        if stage in marks:
            phases[stage] = round(marks[f"{stage}:end"] - previous_end, 2)
            previous_end = marks[f"{stage}:end"]
    validation = sum(v for k, v in phases.items() if k.startswith("validating"))

    t0 = time.perf_counter()
    matrix, names = load_feature_matrix(snapshot_dir_for(dataset))
    load_seconds = time.perf_counter() - t0

    report = {
        "source": str(source),
        "database": connection.vendor,
        "cases": dataset.n_cases,
        "events": dataset.n_events,
        "seconds_total": round(total, 2),
        "seconds_validation": round(validation, 2),
        "seconds_write": round(total - validation, 2),
        "phases": phases,
        "cases_per_second": round(dataset.n_cases / total),
        "events_per_second": round(dataset.n_events / total) if dataset.n_events else None,
        "rows_per_second_write": round(
            (dataset.n_cases + dataset.n_events) / max(total - validation, 1e-9)
        ),
        "python_cpu_seconds": round(time.process_time() - cpu_before - load_seconds, 2),
        "postgres_backend_cpu_seconds": (
            round(backend_cpu_after - backend_cpu_before, 2)
            if backend_cpu_after is not None and backend_cpu_before is not None
            else None
        ),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "feature_matrix_shape": list(matrix.shape),
        "feature_load_seconds": round(load_seconds, 2),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "import.json").write_text(json.dumps(report, indent=2))
    return report
