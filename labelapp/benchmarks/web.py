"""Latency of the labeling pages over HTTP: ``benchmark_speed --part web --out DIR [--quick]``.

Drives a running server (``BENCH_WEB_URL``) or starts gunicorn on 127.0.0.1 itself, logged in as
benchmark users, against a dataset of the configured database (``BENCH_WEB_DATASET``, default
``fraud_handbook``). Measures, per page, the wall time of each request as the client sees it
and the view's own time from its ``Server-Timing`` header:

* ``queue``     - GET the queue page;
* ``case``      - GET a case page (features with ranges, timeline, history, contributions);
* ``next_case`` - POST "next case" (htmx): lease a case with ``SKIP LOCKED`` and render it;
* ``answer``    - POST an answer (htmx): store the label, lease and render the next case
  (down the batch, one new case per answer);
* ``undo``      - POST undo (htmx, the ``u`` key): undo the latest answer, render that case.

If the dataset has no batch yet (no iteration selected one), the benchmark creates one itself:
an iteration marked ``{"benchmark": "web"}`` whose open items are random unlabeled cases (that is
how the loop leaves a batch). Everything the benchmark writes (its labels, audit events, its
batch) is removed at the end and the cases' pool states restored. Writes ``DIR/speed_web.json``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATASET = "fraud_handbook"
BATCH_SIZE = 250  # more than warm-up + requests: every answer takes a new case
REQUESTS_FULL = 200
REQUESTS_QUICK = 40
WARMUP = 5
GUNICORN_WORKERS = 2
BENCH_PASSWORD = "bench-web-not-a-secret"
BENCH_EXPERT = "bench-web-expert"
BENCH_ADMIN = "bench-web-admin"


def bench_dataset():
    """The dataset the web benchmarks measure: ``BENCH_WEB_DATASET`` (default fraud_handbook)."""
    from django.conf import settings

    from labelapp.models import Dataset

    name = os.environ.get("BENCH_WEB_DATASET", DEFAULT_DATASET)
    dataset = Dataset.objects.filter(name=name).first()
    if dataset is None:
        raise SystemExit(
            f"dataset {name!r} is not in the database {settings.DATABASES['default']['NAME']}: "
            "import it first (python manage.py import_dataset DIR --name NAME) or set "
            "BENCH_WEB_DATASET"
        )
    return dataset


def main(out_dir: Path, quick: bool) -> dict[str, Any]:
    from django.conf import settings

    dataset = bench_dataset()
    n_requests = REQUESTS_QUICK if quick else REQUESTS_FULL
    load_before = [round(x, 2) for x in os.getloadavg()]
    users = _bench_users()
    created_batch = _ensure_batch(dataset, size=BATCH_SIZE)
    try:
        with _server(os.environ.get("BENCH_WEB_URL")) as base_url:
            report = _measure(base_url, dataset, users, n_requests=n_requests)
        report["queries"] = _queries_per_page(dataset, users)
    finally:
        _clean_up(dataset, users, created_batch)
    report.update(
        {
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "load_average_before": load_before,
            "dataset": dataset.name,
            "n_cases": dataset.cases.count(),
            "n_events": dataset.events.count(),
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
            "batch_created_by_benchmark": created_batch is not None,
            "requests_per_page": n_requests,
            "server": os.environ.get("BENCH_WEB_URL") or f"gunicorn, {GUNICORN_WORKERS} workers",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "note": "pages: client-observed wall time per request over loopback; "
            "server_view_ms: the view's own time from its Server-Timing header (auth, queries, "
            "rendering; not the session middleware); warm-up requests excluded",
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "speed_web.json").write_text(json.dumps(report, indent=2, default=str))
    _print_table(report)
    return report


# --- setup -----------------------------------------------------------------------------------


def _bench_users() -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from labelapp.services.users import user_create_with_role

    users = {}
    for username, role in ((BENCH_EXPERT, "expert"), (BENCH_ADMIN, "admin")):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            user = user_create_with_role(username=username, password=BENCH_PASSWORD, role=role)
        users[role] = user
    return users


def _ensure_batch(dataset, *, size: int):
    """The benchmark's own batch when the dataset has none (the loop has not run): else None."""
    from django.db import transaction
    from django.db.models import Max

    from labelapp.models import BatchItem, Case, Iteration, PoolState
    from labelapp.services.queue import current_batch_iteration

    if current_batch_iteration(dataset) is not None:
        return None
    max_id = dataset.cases.aggregate(m=Max("row"))["m"] or 0
    rng = random.Random(0)
    rows = sorted(rng.sample(range(max_id + 1), min(size * 3, max_id + 1)))
    cases = list(
        Case.objects.with_shown_scores(dataset)
        .filter(dataset=dataset, row__in=rows, pool_state=PoolState.UNLABELED)
        .order_by("row")
        .values_list("pk", "score")[:size]
    )
    number = (dataset.iterations.aggregate(m=Max("number"))["m"] or 0) + 1
    with transaction.atomic():
        iteration = Iteration.objects.create(
            dataset=dataset, number=number, status="done", params={"benchmark": "web"}
        )
        BatchItem.objects.bulk_create(
            BatchItem(
                iteration=iteration,
                case_id=pk,
                position=i,
                score=score,
                uncertainty=rng.random(),
                cluster=i % 8,
                rank_in_cluster=i // 8,
                reason=f"benchmark batch (cluster {i % 8})",
            )
            for i, (pk, score) in enumerate(cases)
        )
        Case.objects.filter(pk__in=[pk for pk, _ in cases]).update(pool_state=PoolState.SHOWN)
    dataset.__dict__.pop("_current_batch_iteration", None)  # it has a batch now
    return iteration


def _clean_up(dataset, users: dict[str, Any], created_batch) -> None:
    from django.db import transaction

    from labelapp.models import AuditEvent, BatchItem, Label, PoolState

    bench_users = list(users.values())
    with transaction.atomic():
        touched = set(Label.objects.filter(user__in=bench_users).values_list("case_id", flat=True))
        Label.objects.filter(user__in=bench_users, undoes__isnull=False).delete()
        Label.objects.filter(user__in=bench_users).delete()
        AuditEvent.objects.filter(actor__in=bench_users).delete()
        BatchItem.objects.filter(assigned_to__in=bench_users).update(
            assigned_to=None, lease_expires_at=None
        )
        if created_batch is not None:
            case_ids = list(created_batch.batch.values_list("case_id", flat=True))
            dataset.cases.filter(pk__in=case_ids).update(pool_state=PoolState.UNLABELED)
            created_batch.delete()
        else:
            # Our answers were all undone: the batch items are open and the cases "shown" again.
            BatchItem.objects.filter(case_id__in=touched).exclude(status="withdrawn").update(
                status="open"
            )
            dataset.cases.filter(pk__in=touched).update(pool_state=PoolState.SHOWN)
    for user in bench_users:
        user.delete()


# --- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _server(url: str | None):
    if url:
        yield url.rstrip("/")
        return
    import requests

    port = _free_port()
    # A production-like server on plain local HTTP: DEBUG off needs a real key (one per run).
    env = {
        **os.environ,
        "DEBUG": "false",
        "DB_CONN_MAX_AGE": "600",
        "SECURE_HTTPS": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "labelapp.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(GUNICORN_WORKERS),
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/accounts/login/", timeout=10)
                break
            except requests.RequestException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.3)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _login(base: str, username: str):
    import requests

    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=30)
    token = session.cookies["csrftoken"]
    response = session.post(
        f"{base}/accounts/login/",
        data={"username": username, "password": BENCH_PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=30,
    )
    response.raise_for_status()
    if "sessionid" not in session.cookies:
        raise RuntimeError(f"could not log in as {username}")
    session.headers.update({"X-CSRFToken": session.cookies["csrftoken"], "Referer": base})
    return session


# --- measurement -----------------------------------------------------------------------------

IDEMPOTENCY = re.compile(r'name="idempotency_key" value="([0-9a-f]+)"')
CASE_PK = re.compile(r'data-case="(\d+)"')


SERVER_TIMING = re.compile(r"app;dur=([0-9.]+), cpu;dur=([0-9.]+)")


def _timed(call, server: tuple[list[float], list[float]] | None = None) -> tuple[float, Any]:
    """Client wall time of one request in ms; the server's ``Server-Timing`` (wall, CPU) is
    appended to ``server``."""
    start = time.perf_counter()
    response = call()
    elapsed = (time.perf_counter() - start) * 1000.0
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code}")
    match = SERVER_TIMING.search(response.headers.get("Server-Timing", ""))
    if server is not None and match:
        server[0].append(float(match.group(1)))
        server[1].append(float(match.group(2)))
    return elapsed, response


def _measure(base: str, dataset, users: dict[str, Any], *, n_requests: int) -> dict[str, Any]:
    from labelapp.models import BatchItem
    from labelapp.services.queue import current_batch_iteration

    expert = _login(base, BENCH_EXPERT)
    htmx = {"HX-Request": "true"}
    iteration = current_batch_iteration(dataset)
    items = list(
        BatchItem.objects.filter(iteration=iteration, status="open").values_list("pk", "case_id")
    )
    if not items:
        raise RuntimeError("the batch has no open item to measure")
    pages = ("queue", "case", "next_case", "answer", "undo")
    client_ms: dict[str, list[float]] = {k: [] for k in pages}
    server_ms: dict[str, list[float]] = {k: [] for k in pages}
    server_cpu_ms: dict[str, list[float]] = {k: [] for k in pages}
    queue_url = f"{base}/datasets/{dataset.name}/queue/"
    next_url = f"{base}/datasets/{dataset.name}/queue/next/"
    undo_url = f"{base}/datasets/{dataset.name}/queue/undo/"

    def record(page: str, i: int, call) -> Any:
        kept = i >= WARMUP
        ms, response = _timed(call, (server_ms[page], server_cpu_ms[page]) if kept else None)
        if kept:
            client_ms[page].append(ms)
        return response

    def release() -> None:
        BatchItem.objects.filter(assigned_to=users["expert"]).update(
            assigned_to=None, lease_expires_at=None
        )

    # Case pages: the expert holds every case of the batch. The first case page of a fresh
    # server process computes (or loads) the dataset's feature ranges: reported apart.
    release()
    BatchItem.objects.filter(pk__in=[pk for pk, _ in items]).update(
        assigned_to=users["expert"], lease_expires_at="2999-01-01T00:00:00Z"
    )
    cold, _ = _timed(lambda: expert.get(f"{base}/cases/{items[0][1]}/", timeout=120))
    for i in range(WARMUP + n_requests):
        case_id = items[i % len(items)][1]
        record("case", i, lambda c=case_id: expert.get(f"{base}/cases/{c}/", timeout=30))
    for i in range(WARMUP + n_requests):
        record("queue", i, lambda: expert.get(queue_url, timeout=30))
    # Next case: each request claims a fresh case (the previous lease is released, untimed).
    for i in range(WARMUP + n_requests):
        release()
        response = record("next_case", i, lambda: expert.post(next_url, headers=htmx, timeout=30))
        if "data-case=" not in response.text:
            raise RuntimeError("next case returned no case")
    # Answers: each one stores a label, then leases and renders the next case, down the batch.
    # Undos: then the expert presses "u" as many times; each undo brings that case back.
    release()
    response = expert.post(next_url, headers=htmx, timeout=30)
    answered = 0
    for i in range(WARMUP + n_requests):
        found = CASE_PK.search(response.text)
        if found is None:
            break  # the batch ran out
        case_pk = found.group(1)
        key = IDEMPOTENCY.search(response.text).group(1)
        answer = ("not_confirmed", "confirmed", "skipped")[i % 3]
        response = record(
            "answer",
            i,
            lambda c=case_pk, k=key, a=answer: expert.post(
                f"{base}/cases/{c}/answer/",
                data={"answer": a, "idempotency_key": k},
                headers=htmx,
                timeout=30,
            ),
        )
        answered += 1
    for i in range(answered):
        record("undo", i, lambda: expert.post(undo_url, headers=htmx, timeout=30))
    return {
        "pages": {page: _percentiles(client_ms[page]) for page in pages},
        "server_view_ms": {page: _percentiles(server_ms[page]) for page in pages},
        "server_cpu_ms": {page: _percentiles(server_cpu_ms[page]) for page in pages},
        "cold_first_case_page_ms": round(cold, 1),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0}
    return {
        "n": int(arr.size),
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p95_ms": round(float(np.percentile(arr, 95)), 1),
        "p99_ms": round(float(np.percentile(arr, 99)), 1),
        "max_ms": round(float(arr.max()), 1),
    }


def _queries_per_page(dataset, users: dict[str, Any]) -> dict[str, dict[str, float]]:
    """SQL per request, counted in-process with Django's test client.

    ``db_ms`` is the database's own planning + execution time of the request's SELECTs, from
    ``EXPLAIN ANALYZE`` (PostgreSQL only): the part of the page's time that is the database's
    work rather than waiting for a busy machine.
    """
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from labelapp.models import BatchItem

    client = Client()
    client.force_login(users["expert"])
    BatchItem.objects.filter(assigned_to=users["expert"]).update(
        assigned_to=None, lease_expires_at=None
    )
    requests = {
        "next_case": lambda: client.post(
            f"/datasets/{dataset.name}/queue/next/", HTTP_HX_REQUEST="true", HTTP_HOST="localhost"
        ),
        "case": lambda: client.get(f"/cases/{case_pk}/", HTTP_HOST="localhost"),
        "queue": lambda: client.get(f"/datasets/{dataset.name}/queue/", HTTP_HOST="localhost"),
    }
    out: dict[str, dict[str, float]] = {}
    case_pk = None
    for page, call in requests.items():
        with CaptureQueriesContext(connection) as ctx:
            response = call()
        if case_pk is None:
            case_pk = CASE_PK.search(response.content.decode()).group(1)
        out[page] = {"queries": len(ctx.captured_queries)}
        if connection.vendor == "postgresql":
            out[page]["db_ms"] = round(_explain_ms(connection, ctx.captured_queries), 2)
    return out


def _explain_ms(connection, queries: list[dict[str, str]]) -> float:
    total = 0.0
    with connection.cursor() as cursor:
        for query in queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            total += plan[0]["Planning Time"] + plan[0]["Execution Time"]
    return total


def _print_table(report: dict[str, Any]) -> None:
    print(
        f"\nLabeling pages on {report['dataset']} ({report['n_cases']:,} cases, "
        f"{report['database']}), {report['requests_per_page']} requests per page, "
        f"load average {report['load_average']}"
    )
    head = (
        "page",
        "client p50/p95/p99",
        "server p50/p95/p99",
        "server CPU p50/p95",
        "SQL",
        "db ms",
    )
    print(f"{head[0]:<10} {head[1]:>22} {head[2]:>22} {head[3]:>19} {head[4]:>4} {head[5]:>6}")
    for page, c in report["pages"].items():
        v = report["server_view_ms"][page]
        u = report["server_cpu_ms"][page]
        q = report.get("queries", {}).get(page, {})
        client = f"{c['p50_ms']}/{c['p95_ms']}/{c['p99_ms']}"
        server = f"{v.get('p50_ms')}/{v.get('p95_ms')}/{v.get('p99_ms')}"
        cpu = f"{u.get('p50_ms')}/{u.get('p95_ms')}"
        print(
            f"{page:<10} {client:>22} {server:>22} {cpu:>19} "
            f"{q.get('queries', ''):>4} {q.get('db_ms', ''):>6}"
        )
    print(f"first case page of a fresh server: {report['cold_first_case_page_ms']} ms")
