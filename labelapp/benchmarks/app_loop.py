"""The harness's protocol run through the product: ``python manage.py benchmark_app``.

For one ``--seed`` the split, the seed positives and every simulated expert answer are the
harness's (:class:`learning.bench.harness.Harness`); then:

1. the pool (without its ``label`` column: the truth stays in this process's memory) is imported
   into the configured database through the import service, its seeds as ``seed_positive``;
2. each iteration is launched through the launch page's service and run by real Celery workers
   (started here, ``--workers N``, or the running ones with ``--workers 0``);
3. a simulated precision-first expert answers each batch through the REST API (token auth,
   ``POST /api/datasets/<name>/queue/next/`` then ``POST /api/labels/``), by default in process
   through Django's full request stack, or against a live server with ``--api-url``;
4. after the last iteration the test part is scored with the current model version's export
   bundle through :mod:`learning.score` (known positives at scoring time: the bundle's P plus the
   test part's own seeds, as in the harness).

The report is the harness's format, with the method ``active_pu_app`` beside the harness's
``active_pu`` run in the same command, and the app run's stage times.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings

from learning.bench.harness import (
    Harness,
    Settings,
    _plots,
    _write,
    pool_schema,
    report_head,
    run_active,
)
from learning.features import load_dataset

APP_METHOD = "active_pu_app"
HARNESS_METHOD = "active_pu"
POLL_S = 0.5
ITERATION_TIMEOUT_S = 3 * 3600


# -- the expert's HTTP client ----------------------------------------------------------------------
class ApiClient:
    """POSTs JSON with a token, in process (Django's test client) or to a live server."""

    def __init__(self, token: str, base_url: str | None = None):
        self.token, self.base_url = token, base_url.rstrip("/") if base_url else None
        self.requests = 0
        if self.base_url is None:
            from django.test import Client

            host = (settings.ALLOWED_HOSTS or ["localhost"])[0].lstrip(".")
            self._client = Client(HTTP_HOST="localhost" if host in ("*", "") else host)

    def post(self, path: str, payload: dict | None = None) -> tuple[int, Any]:
        self.requests += 1
        body = json.dumps(payload or {})
        if self.base_url is None:
            response = self._client.post(
                path,
                data=body,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Token {self.token}",
            )
            content = response.content
            code = response.status_code
        else:
            request = urllib.request.Request(
                self.base_url + path,
                data=body.encode(),
                method="POST",
                headers={
                    "Authorization": f"Token {self.token}",
                    "Content-Type": "application/json",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    code, content = response.status, response.read()
            except urllib.error.HTTPError as exc:
                code, content = exc.code, exc.read()
        return code, (json.loads(content) if content else None)


# -- workers ---------------------------------------------------------------------------------------
def workers_start(
    n: int, log_dir: Path, *, threads: int
) -> tuple[str | None, list[subprocess.Popen]]:
    """``n`` worker processes on a queue of their own (or none: the running workers' queue).

    Each runs LightGBM on ``threads`` threads (``LOOP_THREADS``), as the harness does: LightGBM's
    sums depend on the thread count, and a loop is chaotic (one different pick changes every
    later batch), so the two runs compare only at the same count.
    """
    from labelapp.celery import app as celery_app
    from labelapp.workers import worker_command, worker_environment

    if n <= 0:
        return None, []
    queue = f"bench-app-{uuid.uuid4().hex[:8]}"
    celery_app.conf.task_default_queue = queue
    env = worker_environment(queue, LOOP_THREADS=str(threads))
    procs = []
    log_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        log = open(log_dir / f"worker-{i}.log", "w")  # noqa: SIM115 - the process keeps it
        procs.append(
            subprocess.Popen(
                worker_command(queue, name=f"{queue}-{i}"),
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return queue, procs


def workers_wait(queue: str | None, timeout: float = 180.0) -> None:
    from labelapp.tasks.system import ping

    options = {"queue": queue} if queue else {}
    try:
        ping.apply_async(args=[1], **options).get(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure means no worker answered
        raise RuntimeError(
            f"no Celery worker answered within {timeout:.0f} s: start one (make worker) or pass "
            "--workers N"
        ) from exc


def workers_stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the run ---------------------------------------------------------------------------------------
def pool_folder_write(h: Harness, folder: Path) -> Path:
    """The pool as a dataset folder: no ``label``; the harness's seeds as ``seed_positive``."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = h.raw.iloc[h.split.pool].drop(columns=["label"], errors="ignore").copy()
    cases["seed_positive"] = h.pool_seed.astype(int)
    cases.reset_index(drop=True).to_parquet(folder / "cases.parquet", index=False)
    (folder / "schema.json").write_text(json.dumps(pool_schema(h.ds)))
    return folder


def _wait_iteration(iteration) -> None:
    from labelapp.models import Iteration

    t0 = time.monotonic()
    while True:
        iteration.refresh_from_db()
        if iteration.status not in Iteration.ACTIVE_STATUSES:
            break
        if time.monotonic() - t0 > ITERATION_TIMEOUT_S:
            raise RuntimeError(f"iteration #{iteration.number} did not end in time")
        time.sleep(POLL_S)
    if iteration.status != Iteration.Status.DONE:
        raise RuntimeError(
            f"iteration #{iteration.number} {iteration.status}: {iteration.error or '?'}"
        )


def expert_answer_batch(
    api: ApiClient, dataset_name: str, truth: dict[str, bool]
) -> tuple[int, int]:
    """Answer the current batch as the simulated expert; returns (answered, confirmed)."""
    answered = confirmed = 0
    while True:
        code, case = api.post(f"/api/datasets/{dataset_name}/queue/next/")
        if code == 204:
            return answered, confirmed
        if code != 200:
            raise RuntimeError(f"queue/next answered {code}: {case}")
        yes = truth[case["case_id"]]
        answer = "confirmed" if yes else "not_confirmed"
        code, body = api.post(
            "/api/labels/",
            {"case": case["id"], "answer": answer, "idempotency_key": uuid.uuid4().hex},
        )
        if code not in (200, 201):
            raise RuntimeError(f"labels answered {code}: {body}")
        answered += 1
        confirmed += int(yes)


def score_test_with_bundle(h: Harness, version) -> np.ndarray:
    """Test scores from the version's export bundle (:mod:`learning.score`)."""
    from labelapp.services.export import model_version_export
    from learning.bundle import extract_bundle
    from learning.score import ScoringModel

    with tempfile.TemporaryDirectory(prefix="bench-app-bundle-") as tmp:
        bundle = Path(tmp) / "bundle.zip"
        with open(bundle, "wb") as handle:
            model_version_export(model_version=version, out=handle, via="command")
        extract_bundle(bundle, Path(tmp) / "model")
        model = ScoringModel.from_dir(Path(tmp) / "model")
    raw = h.raw.drop(columns=["label", "seed_positive"], errors="ignore")
    if model.spec.positive_columns:
        # Known positives at scoring time: the bundle's P and the test part's own seeds (a rule
        # that fires in real time), exactly the harness's known positives.
        extra = raw.loc[h.test_seed_mask, model.spec.positive_columns]
        model.positives = pd.concat([model.positives, extra], ignore_index=True)
    # Every case is scored so that a test case's entity history (deviation features) is there.
    return model.score(raw)[h.split.test]


def run_benchmark_app(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    iterations: int = 10,
    batch_size: int = 100,
    seed_fraction: float = 0.1,
    expert_recall: float = 0.9,
    seed: int = 0,
    workers: int = 2,
    threads: int = 1,
    api_url: str | None = None,
    harness: bool = True,
    log: Callable[[str], None] = print,
    **loop_params: Any,
) -> dict:
    """Run the protocol through the app (and the harness beside it); write the report."""
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    from labelapp.models import Case, PoolState
    from labelapp.services.imports import dataset_import
    from labelapp.services.iterations import iteration_launch
    from labelapp.services.users import user_create_with_role

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    st = Settings.from_kwargs(
        iterations=iterations,
        seed_fraction=seed_fraction,
        expert_recall=expert_recall,
        seed=seed,
        methods=(HARNESS_METHOD,),
        n_jobs=threads,
        batch_size=batch_size,
        **loop_params,
    )
    ds = load_dataset(data_dir)
    if ds.labels is None:
        raise ValueError(f"{data_dir} has no label column: the simulated expert needs the truth")
    h = Harness(ds, st, None, log)
    pool_ids = h.raw["case_id"].astype(str).to_numpy()[h.split.pool]
    truth = dict(zip(pool_ids, h.expert_confirms[h.split.pool].tolist(), strict=True))
    true_positive = dict(zip(pool_ids, (h.y[h.split.pool] == 1).tolist(), strict=True))
    name = f"bench-app-{ds.name.lower().replace('_', '-')}"[:60]
    log(
        f"{ds.name}: pool {len(h.split.pool):,} ({h.split.rule}), test {len(h.split.test):,}; "
        f"{int(h.pool_seed.sum())} seeds in the pool; importing as {name!r}"
    )
    timings: dict[str, Any] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-app-pool-") as tmp:
        folder = pool_folder_write(h, Path(tmp) / ds.name)
        dataset = dataset_import(name=name, source_dir=folder, replace=True, via="command")
    timings["import_s"] = round(time.perf_counter() - t0, 2)
    log(f"imported {dataset.n_cases:,} cases in {timings['import_s']:.1f} s")

    admin = user_create_with_role(
        username="bench-app-admin", password=uuid.uuid4().hex, role="admin"
    )
    expert = user_create_with_role(
        username="bench-app-expert", password=uuid.uuid4().hex, role="expert"
    )
    token, _ = Token.objects.get_or_create(user=User.objects.get(pk=expert.pk))
    api = ApiClient(token.key, api_url)

    queue, procs = workers_start(workers, out / "workers", threads=threads)
    params = st.loop.to_dict()
    iterations_info: list[dict] = []
    curve: list[dict] = []
    labels = found = 0
    try:
        workers_wait(queue)
        for number in range(1, st.iterations + 2):
            t0 = time.perf_counter()
            iteration = iteration_launch(dataset=dataset, user=admin, params=params, via="command")
            _wait_iteration(iteration)
            wall = time.perf_counter() - t0
            stages = (iteration.metrics or {}).get("stage_seconds", {})
            iterations_info.append(
                {"iteration": iteration.number, "seconds": round(wall, 2), "stages": stages}
            )
            curve.append({"labels": labels, "positives_found": found, "pr_auc": None})
            log(
                f"  {APP_METHOD}: iteration {number}/{st.iterations + 1} done in {wall:.1f} s "
                f"(" + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()) + ")"
            )
            if number == st.iterations + 1:
                break
            t0 = time.perf_counter()
            answered, _ = expert_answer_batch(api, dataset.name, truth)
            iterations_info[-1]["answer_s"] = round(time.perf_counter() - t0, 2)
            labels += answered
            states = dict(
                Case.objects.filter(dataset=dataset, pool_state=PoolState.CONFIRMED).values_list(
                    "case_id", "pool_state"
                )
            )
            found = sum(true_positive[c] for c in states)
    finally:
        workers_stop(procs)
    dataset.refresh_from_db()
    version = dataset.current_model
    t0 = time.perf_counter()
    scores = score_test_with_bundle(h, version)
    timings["score_test_s"] = round(time.perf_counter() - t0, 2)
    app_seconds = time.perf_counter() - t_start
    metrics = h.test_metrics(scores)
    confirmed = Case.objects.filter(dataset=dataset, pool_state=PoolState.CONFIRMED).count()
    metrics.update(
        labels_used=labels,
        positives_found=found,
        confirmed=confirmed,
        seconds=app_seconds,
    )
    curve[-1]["pr_auc"] = metrics["pr_auc"]
    test_scores = {APP_METHOD: scores}
    report = report_head(h, st)
    report["methods"][APP_METHOD] = metrics
    report["curves"][APP_METHOD] = curve
    report["app"] = {
        "dataset": dataset.name,
        "workers": workers if workers > 0 else "running workers",
        "threads_per_worker": threads if workers > 0 else "as configured (LOOP_THREADS)",
        "api": api_url or "in process (Django test client, full request stack)",
        "api_requests": api.requests,
        "model_version": version.pk,
        "iterations": iterations_info,
        "stage_seconds_total": _stage_totals(iterations_info),
        "answer_seconds_total": round(sum(i.get("answer_s", 0) for i in iterations_info), 2),
        **timings,
        "seconds_total": round(app_seconds, 2),
    }
    log(
        f"  {APP_METHOD}: PR-AUC {metrics['pr_auc']:.3f}, recall@p0.8 "
        f"{metrics['recall_at_precision']['0.8']:.3f}, positives found {found} "
        f"({app_seconds:.0f} s)"
    )
    _write(report, out)
    if harness:
        log(f"{HARNESS_METHOD} in the harness, same split, seeds and answers ...")
        h_metrics, h_curve, h_scores = run_active(h, HARNESS_METHOD)
        report["methods"][HARNESS_METHOD] = h_metrics
        report["curves"][HARNESS_METHOD] = h_curve
        test_scores[HARNESS_METHOD] = h_scores
        log(
            f"  {HARNESS_METHOD}: PR-AUC {h_metrics['pr_auc']:.3f}, recall@p0.8 "
            f"{h_metrics['recall_at_precision']['0.8']:.3f}, positives found "
            f"{h_metrics['positives_found']} ({h_metrics['seconds']:.0f} s)"
        )
        report["comparison"] = _comparison(metrics, h_metrics)
    report["seconds_total"] = round(time.perf_counter() - t_start, 2)
    _write(report, out)
    (out / "report.md").write_text(
        (out / "report.md").read_text() + app_markdown(report), encoding="utf-8"
    )
    _plots(report, h.y[h.split.test], test_scores, out)
    log(f"wrote {out / 'report.json'}, {out / 'report.md'} and plots")
    return report


def _stage_totals(iterations_info: list[dict]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for info in iterations_info:
        for stage, seconds in info["stages"].items():
            totals[stage] = round(totals.get(stage, 0.0) + float(seconds), 2)
    return totals


def _comparison(app: dict, harness: dict) -> dict:
    found_app, found_h = app["positives_found"], harness["positives_found"]
    return {
        "pr_auc_difference": round(app["pr_auc"] - harness["pr_auc"], 4),
        "recall_at_precision_0.8_difference": round(
            app["recall_at_precision"]["0.8"] - harness["recall_at_precision"]["0.8"], 4
        ),
        "positives_found_ratio": round(found_app / found_h, 4) if found_h else None,
        "app_seconds": round(app["seconds"], 1),
        "harness_seconds": round(harness["seconds"], 1),
    }


def app_markdown(report: dict) -> str:
    app = report["app"]
    lines = ["", "## The app run", ""]
    lines.append(
        f"Dataset `{app['dataset']}`, workers: {app['workers']}, API: {app['api']} "
        f"({app['api_requests']} requests); model version {app['model_version']}."
    )
    lines += ["", "| part | seconds |", "|---|---:|"]
    lines.append(f"| import of the pool | {app['import_s']:.1f} |")
    for stage, seconds in app["stage_seconds_total"].items():
        lines.append(f"| iterations: {stage} (sum) | {seconds:.1f} |")
    lines.append(f"| expert answers through the API (sum) | {app['answer_seconds_total']:.1f} |")
    lines.append(f"| test scoring with the export bundle | {app['score_test_s']:.1f} |")
    lines.append(f"| app run in all | {app['seconds_total']:.1f} |")
    if "comparison" in report:
        c = report["comparison"]
        lines += [
            "",
            f"`active_pu_app` - `active_pu`: PR-AUC {c['pr_auc_difference']:+.4f}, recall at "
            f"precision 0.8 {c['recall_at_precision_0.8_difference']:+.4f}; positives found "
            f"ratio {c['positives_found_ratio']}; wall time app {c['app_seconds']:.0f} s vs "
            f"harness {c['harness_seconds']:.0f} s.",
        ]
    return "\n".join(lines) + "\n"
