"""The loop in the app: stage times of one iteration, and the dataset page's latency meanwhile.

``python manage.py benchmark_speed --part loop --out DIR [--quick]`` on an imported dataset
(``LOOP_BENCH_DATASET``, default ``fraud_handbook``). It starts its own Celery worker process,
times the dataset page while idle, launches one iteration, times the page while the iteration
trains, then idle again, and writes ``DIR/speed_loop.json``: stage times, launch -> batch ready,
the worker's peak RSS, how long the shown scores follow the version, and (after the worker has
stopped) one plain LightGBM fit on the same matrix with the ratio of the two
(``LOOP_BENCH_PLAIN_FIT=0`` leaves it out).

``LOOP_BENCH_ANSWER=DIR`` (the dataset's folder, whose ``label`` column is the truth) first
answers the dataset's current batch as a precision-first expert would, so that the timed
iteration is one a user launches after a batch: with answers to learn from and the estimate of
positives left to make (it follows the batch; ``positives_left_after_batch_seconds``).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from labelapp.workers import worker_command

IDLE_REQUESTS = 40
PAUSE_S = 0.25


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(1000 * statistics.median(values), 1),
        "p95_ms": round(1000 * _percentile(values, 95), 1),
        "max_ms": round(1000 * max(values), 1),
    }


def _client(url: str) -> tuple[Any, Any]:
    """A logged-in admin's test client (warmed on ``url``) and that admin."""
    from django.test import Client

    from labelapp.services.users import user_create_with_role

    user = user_create_with_role(
        username=f"bench-admin-{uuid.uuid4().hex[:6]}", password=uuid.uuid4().hex, role="admin"
    )
    client = Client()
    client.force_login(user)
    client.get(url)  # warm caches and the connection
    return client, user


def _timed_get(client, url: str) -> float:
    t0 = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    return elapsed


def _peak_rss_gib(pid: int) -> float | None:
    """A process's peak resident memory so far (Linux's VmHWM), GiB; None where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024**2, 2)
    except OSError:
        return None
    return None


def answer_current_batch(dataset, folder: Path, user) -> dict:
    """Answer the open cases of ``dataset``'s last batch from the truth in ``folder``."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from labelapp.models import BatchItem, Iteration, PoolState
    from labelapp.services.labels import label_create

    last = Iteration.objects.filter(dataset=dataset, status="done").order_by("-number").first()
    if last is None:
        raise RuntimeError(f"{dataset.name} has no batch to answer: run one iteration first")
    items = list(
        BatchItem.objects.filter(iteration=last, is_check=False, case__pool_state=PoolState.SHOWN)
        .select_related("case")
        .order_by("position")
    )
    ids = [item.case.case_id for item in items]
    table = pq.read_table(Path(folder) / "cases.parquet", columns=["case_id", "label"])
    table = table.filter(pc.is_in(table["case_id"], value_set=pc.cast(ids, table["case_id"].type)))
    truth = dict(zip(table["case_id"].to_pylist(), table["label"].to_pylist(), strict=True))
    confirmed = 0
    for item in items:
        yes = bool(truth[item.case.case_id])
        label_create(
            user=user,
            case=item.case,
            answer="confirmed" if yes else "not_confirmed",
            batch_item=item,
            via="command",
        )
        confirmed += yes
    return {"iteration": last.number, "answered": len(items), "confirmed": confirmed}


def plain_lightgbm_fit_seconds(dataset, params: dict) -> dict:
    """One plain LightGBM fit (known positives against the rest, the iteration's trees and
    threads) on the matrix the iteration builds for ``dataset``: the reference of issue #18's
    "an app iteration <= 2x one plain LightGBM fit on the same matrix"."""
    from labelapp.selectors.datasets import snapshot_dir_for
    from labelapp.services.pipeline import pool_states, read_snapshot_cases, snapshot_feature_spec
    from learning.baselines import fit_gbrt
    from learning.loop import ActiveLoop, LoopParams
    from learning.pool import positive_mask

    snapshot = snapshot_dir_for(dataset)
    cases = read_snapshot_cases(snapshot, model_inputs_only=True)
    loop = ActiveLoop(LoopParams.from_mapping(params))
    spec = snapshot_feature_spec(loop, snapshot, cases)
    positive = positive_mask(pool_states(dataset))
    X = loop.matrix(spec, cases, loop.positives_frame(spec, cases, positive))
    del cases
    threads = int(getattr(settings, "LOOP_THREADS", 0)) or os.cpu_count() or 1
    t0 = time.perf_counter()
    fit_gbrt(
        X,
        positive.astype(int),
        categorical_features=spec.categorical_indices or None,
        n_estimators=loop.params.n_estimators,
        n_jobs=threads,
        seed=0,
    )
    return {
        "seconds": round(time.perf_counter() - t0, 2),
        "rows": int(X.shape[0]),
        "features": int(X.shape[1]),
        "n_estimators": loop.params.n_estimators,
        "threads": threads,
    }


def _start_worker(queue: str, number: int = 0) -> subprocess.Popen:
    env = {**os.environ, "CELERY_TASK_DEFAULT_QUEUE": queue, "PYTHONUNBUFFERED": "1"}
    log = open(Path(settings.VAR_DIR) / f"bench-worker-{queue}-{number}.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        worker_command(queue, name=f"bench{number}"),
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def main(out_dir: Path, quick: bool) -> dict:
    from django.urls import reverse

    from labelapp.celery import app as celery_app
    from labelapp.models import Dataset, Iteration
    from labelapp.services.iterations import iteration_launch
    from labelapp.tasks.system import ping

    name = os.environ.get("LOOP_BENCH_DATASET", "fraud_handbook")
    dataset = Dataset.objects.get(name=name)
    # LOOP_BENCH_EMBEDDINGS=1: pretrain (LOOP_BENCH_ENCODER_MINUTES) and embed as well;
    # LOOP_BENCH_WORKERS=N: N workers share the chunked stages (embedding, scoring).
    embeddings = os.environ.get("LOOP_BENCH_EMBEDDINGS", "0") == "1"
    n_workers = max(1, int(os.environ.get("LOOP_BENCH_WORKERS", "1")))
    params = {
        "use_embeddings": os.environ.get(
            "LOOP_BENCH_EMBEDDINGS_SETTING", "on" if embeddings else "off"
        ),
        "batch_size": 100,
        "n_clusters": 10,
        "pool_size": 1000,
    }
    if embeddings:
        params["encoder_minutes"] = float(os.environ.get("LOOP_BENCH_ENCODER_MINUTES", "5"))
    if quick:
        params.update({"n_estimators": 30, "max_unlabeled": 50_000})
    url = reverse("dataset-detail", args=[dataset.name])
    client, admin = _client(url)
    answered = None
    if os.environ.get("LOOP_BENCH_ANSWER"):
        answered = answer_current_batch(dataset, Path(os.environ["LOOP_BENCH_ANSWER"]), admin)
        print(f"answered batch {answered}", flush=True)

    # A terminated benchmark still stops the worker it started (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    celery_app.conf.task_default_queue = queue
    workers = [_start_worker(queue, i) for i in range(n_workers)]
    try:
        ping.apply_async(args=[1], queue=queue).get(timeout=120)
        print(f"worker up; timing {url} idle", flush=True)
        idle_before = []
        for _ in range(IDLE_REQUESTS):
            idle_before.append(_timed_get(client, url))
            time.sleep(PAUSE_S)
        t0 = time.perf_counter()
        iteration = iteration_launch(dataset=dataset, params=params, via="command")
        during_train: list[float] = []
        during_other: list[float] = []
        last_stage = ""
        ended_s = None
        while True:
            iteration.refresh_from_db()
            if iteration.stage != last_stage:
                print(f"  {time.perf_counter() - t0:7.1f}s stage {iteration.stage}", flush=True)
                last_stage = iteration.stage
            if iteration.status not in Iteration.ACTIVE_STATUSES:
                ended_s = ended_s or time.perf_counter() - t0
                # The shown scores follow the pointer flip: wait for them, page timed meanwhile.
                if iteration.status != "done" or not _case_scores_pending(dataset):
                    break
            elapsed = _timed_get(client, url)
            (during_train if iteration.stage == "train" else during_other).append(elapsed)
            time.sleep(PAUSE_S)
        total_s = time.perf_counter() - t0
        idle_after = []
        for _ in range(IDLE_REQUESTS):
            idle_after.append(_timed_get(client, url))
            time.sleep(PAUSE_S)
        worker_peaks = [_peak_rss_gib(worker.pid) for worker in workers]
    finally:
        for worker in workers:
            worker.terminate()  # warm shutdown: the task in hand finishes first
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                # e.g. the neighbour index the iteration queued for its new model version,
                # minutes on 1.17M cases: not part of what is measured here.
                worker.kill()
                worker.wait()

    idle = idle_before + idle_after
    iteration.refresh_from_db()
    # After the workers stopped, so that the two do not share the cores.
    plain = None
    if os.environ.get("LOOP_BENCH_PLAIN_FIT", "1") == "1" and iteration.status == "done":
        print("timing one plain LightGBM fit on the same matrix", flush=True)
        plain = plain_lightgbm_fit_seconds(dataset, iteration.params)
    report = {
        "dataset": dataset.name,
        "n_cases": dataset.n_cases,
        "params": iteration.params,
        "iteration": iteration.pk,
        "status": iteration.status,
        "error": iteration.error,
        "wall_seconds": round(total_s, 1),
        "launch_to_batch_ready_seconds": round(ended_s or total_s, 1),
        "case_scores_after_done_seconds": round(total_s - (ended_s or total_s), 1),
        "plain_lightgbm_fit": plain,
        "ratio_iteration_vs_plain_fit": round((ended_s or total_s) / plain["seconds"], 2)
        if plain
        else None,
        "worker_peak_rss_gib": worker_peaks,
        "stage_seconds": (iteration.metrics or {}).get("stage_seconds"),
        "answered_before": answered,
        "positives_left_after_batch_seconds": (iteration.metrics or {}).get(
            "positives_left_seconds"
        ),
        "batch_size": iteration.batch.count(),
        "page": url,
        "latency_idle": _summary(idle),
        "latency_during_train": _summary(during_train),
        "latency_during_other_stages": _summary(during_other),
        "workers": n_workers,
        "threads": getattr(settings, "LOOP_THREADS", 0) or "all",
        "worker_nice": getattr(settings, "LOOP_WORKER_NICE", 0),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }
    if idle and during_train:
        report["p95_ratio_train_vs_idle"] = round(
            _percentile(during_train, 95) / _percentile(idle, 95), 3
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "speed_loop.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def _case_scores_pending(dataset) -> bool:
    dataset.refresh_from_db(fields=["current_model", "scores_model"])
    return dataset.case_scores_pending
