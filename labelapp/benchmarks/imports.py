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
from django.db import connection

from labelapp.models import Dataset
from labelapp.selectors.datasets import snapshot_dir_for
from labelapp.services.imports import dataset_delete, dataset_import

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
    old = Dataset.objects.filter(name=name).first()
    if old is not None:  # not part of the measurement
        dataset_delete(dataset=old)
    # (wall, cpu) when each stage last reported: the stage ends there.
    marks: dict[str, tuple[float, float]] = {}

    def progress(stage: str, done: int, total: int | None) -> None:
        marks[stage] = (time.perf_counter(), time.process_time())

    backend_pid = wal_before = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), pg_current_wal_lsn()")
            backend_pid, wal_before = cursor.fetchone()
    backend_cpu_before = _backend_cpu_seconds(backend_pid)
    start = (time.perf_counter(), time.process_time())
    dataset = dataset_import(name=name, source_dir=source, progress=progress)
    end = (time.perf_counter(), time.process_time())
    backend_cpu_after = _backend_cpu_seconds(backend_pid)
    wal_mib = None
    if wal_before is not None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [wal_before])
            wal_mib = round(float(cursor.fetchone()[0]) / 2**20)

    phases, previous = {}, start
    for stage in ("validating cases", "validating events", "importing cases", "importing events"):
        if stage in marks:
            phases[stage] = {
                "wall_seconds": round(marks[stage][0] - previous[0], 2),
                "python_cpu_seconds": round(marks[stage][1] - previous[1], 2),
            }
            previous = marks[stage]
    phases["finish and commit"] = {
        "wall_seconds": round(end[0] - previous[0], 2),
        "python_cpu_seconds": round(end[1] - previous[1], 2),
    }
    validated = marks.get("validating events", marks.get("validating cases", start))
    total = end[0] - start[0]
    backend_cpu = (
        round(backend_cpu_after - backend_cpu_before, 2)
        if backend_cpu_after is not None and backend_cpu_before is not None
        else None
    )

    load_start = (time.perf_counter(), time.process_time())
    matrix, names = load_feature_matrix(snapshot_dir_for(dataset))
    load_wall, load_cpu = (time.perf_counter() - load_start[0], time.process_time() - load_start[1])

    report = {
        "source": str(source),
        "database": connection.vendor,
        "cases": dataset.n_cases,
        "events": dataset.n_events,
        "wall_seconds_total": round(total, 2),
        "wall_seconds_validation": round(validated[0] - start[0], 2),
        "wall_seconds_write": round(end[0] - validated[0], 2),
        "cases_per_second": round(dataset.n_cases / total),
        "events_per_second": round(dataset.n_events / total) if dataset.n_events else None,
        "phases": phases,
        "python_cpu_seconds": round(end[1] - start[1], 2),
        "python_cpu_seconds_validation": round(validated[1] - start[1], 2),
        "postgres_backend_cpu_seconds": backend_cpu,
        "postgres_wal_mib": wal_mib,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "feature_matrix_shape": list(matrix.shape),
        "feature_names": names,
        "feature_load_wall_seconds": round(load_wall, 2),
        "feature_load_cpu_seconds": round(load_cpu, 2),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "import.json").write_text(json.dumps(report, indent=2))
    return report


def main(out_dir: Path, quick: bool) -> dict:
    """``benchmark_speed``-style entry point: the full ``fraud_handbook`` from ``../shared/data``
    (``SHARED_DATA`` overrides), or with ``quick`` a generated 50,000-case demo dataset."""
    if quick:
        import tempfile

        from labelapp.demo import generate_demo_dataset

        with tempfile.TemporaryDirectory() as tmp:
            folder = generate_demo_dataset(Path(tmp) / "demo", n_cases=50_000)
            return run(folder, name="bench-demo", out_dir=out_dir)
    shared = Path(
        os.environ.get("SHARED_DATA", Path(__file__).resolve().parents[3] / "shared/data")
    )
    return run(shared / "fraud_handbook", name="bench-fraud-handbook", out_dir=out_dir)
