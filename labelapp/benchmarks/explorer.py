"""Latency of the case explorer over HTTP: ``benchmark_speed --part explorer --out DIR [--quick]``.

Like the labeling pages' benchmark (:mod:`labelapp.benchmarks.web`, whose server and login it
reuses): gunicorn on 127.0.0.1 (or ``BENCH_WEB_URL``), a benchmark admin, the dataset
``BENCH_WEB_DATASET`` (default ``fraud_handbook``) of the configured database. Each scenario
opens the explorer with its filters and follows "Next" (the keyset cursor) page after page; the
p95 of every page request is the figure (the issue asks for at most 150 ms per page on
fraud_handbook in PostgreSQL). ``BENCH_EXPLORER_WHERE`` and ``BENCH_EXPLORER_COMMON``
override the rare and the common column condition. Changes nothing but the benchmark users
it creates and removes. Writes ``DIR/speed_explorer.json``.
"""

from __future__ import annotations

import html
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import numpy as np

from labelapp.benchmarks.web import (
    BENCH_ADMIN,
    BENCH_EXPERT,
    _bench_users,
    _login,
    _percentiles,
    _server,
    _timed,
    bench_dataset,
)

PAGES_FULL, WALKS_FULL = 20, 5
PAGES_QUICK, WALKS_QUICK = 5, 2
DEFAULT_WHERE = "amount > 220 and is_night == 1"
DEFAULT_COMMON = "amount > 50 and customer_nb_tx_7d >= 2"
NEXT_LINK = re.compile(r'href="([^"]+)" id="next-page"')


def scenarios(dataset, where: str, common: str) -> dict[str, dict[str, Any]]:
    """Filters of each scenario (query parameters of the explorer page): ``where`` a rare
    condition (the snapshot's mask names its rows), ``common`` one that matches many cases
    (evaluated by SQL during the ordered index scan)."""
    entity = dataset.cases.order_by("row").values_list("entity_id", flat=True).first() or ""
    return {
        "score": {},
        "time": {"sort": "time"},
        "unlabeled_score": {"state": "U"},
        "seeds": {"state": "P"},
        "score_range": {"score_min": "0.05", "score_max": "0.5"},
        "condition_score": {"where": where},
        "condition_time": {"where": where, "sort": "time"},
        "common_condition": {"where": common},
        "entity": {"q": entity, "sort": "time"},
    }


def main(out_dir: Path, quick: bool) -> dict[str, Any]:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    dataset = bench_dataset()
    where = os.environ.get("BENCH_EXPLORER_WHERE", DEFAULT_WHERE)
    common = os.environ.get("BENCH_EXPLORER_COMMON", DEFAULT_COMMON)
    pages, walks = (PAGES_QUICK, WALKS_QUICK) if quick else (PAGES_FULL, WALKS_FULL)
    existed = set(
        get_user_model()
        .objects.filter(username__in=[BENCH_ADMIN, BENCH_EXPERT])
        .values_list("username", flat=True)
    )
    users = _bench_users()
    try:
        with _server(os.environ.get("BENCH_WEB_URL")) as base:
            report = _measure(base, dataset, scenarios(dataset, where, common), pages, walks)
    finally:
        for user in users.values():
            if user.username not in existed:
                user.delete()
    report.update(
        {
            "dataset": dataset.name,
            "n_cases": dataset.n_cases,
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
            "where": where,
            "common_where": common,
            "pages_per_walk": pages,
            "walks": walks,
            "server": os.environ.get("BENCH_WEB_URL") or "gunicorn (labelapp.benchmarks.web)",
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "note": "client wall time per page request over loopback (first walk of each "
            "scenario is a warm-up and not counted); server_view_ms from Server-Timing",
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "speed_explorer.json").write_text(json.dumps(report, indent=2, default=str))
    _print_table(report)
    return report


def _measure(base: str, dataset, cases: dict[str, dict], pages: int, walks: int) -> dict:
    from urllib.parse import urlencode

    admin = _login(base, BENCH_ADMIN)
    url = f"{base}/datasets/{dataset.name}/cases/"
    client: dict[str, list[float]] = {}
    server: dict[str, tuple[list[float], list[float]]] = {}
    reached: dict[str, int] = {}
    for scenario, params in cases.items():
        client[scenario], server[scenario] = [], ([], [])
        for walk in range(walks + 1):  # walk 0 warms the caches up
            kept = walk > 0
            link = f"{url}?{urlencode(params)}"
            for number in range(pages):
                ms, response = _timed(
                    lambda link=link: admin.get(link, timeout=60),
                    server[scenario] if kept else None,
                )
                if 'id="cases"' not in response.text:
                    raise RuntimeError(f"{scenario}: no result table at {link}")
                if kept:
                    client[scenario].append(ms)
                found = NEXT_LINK.search(response.text)
                reached[scenario] = number + 1
                if found is None:
                    break
                link = url + html.unescape(found.group(1))
    every = [ms for values in client.values() for ms in values]
    return {
        "all_pages": _percentiles(every),
        "scenarios": {
            name: {
                "params": cases[name],
                "pages_reached": reached[name],
                "client": _percentiles(client[name]),
                "server_view_ms": _percentiles(server[name][0]),
            }
            for name in cases
        },
        "p95_ms": round(float(np.percentile(every, 95)), 1) if every else None,
    }


def _print_table(report: dict[str, Any]) -> None:
    print(
        f"\nCase explorer on {report['dataset']} ({report['n_cases']:,} cases, "
        f"{report['database']}), up to {report['pages_per_walk']} pages x {report['walks']} walks "
        f"per scenario, load average {report['load_average']}"
    )
    print(f"{'scenario':<16} {'pages':>5} {'client p50/p95/max ms':>24} {'server p50/p95':>16}")
    for name, row in report["scenarios"].items():
        c, s = row["client"], row["server_view_ms"]
        print(
            f"{name:<16} {row['pages_reached']:>5} "
            f"{str(c.get('p50_ms')) + '/' + str(c.get('p95_ms')) + '/' + str(c.get('max_ms')):>24} "
            f"{str(s.get('p50_ms')) + '/' + str(s.get('p95_ms')):>16}"
        )
    a = report["all_pages"]
    print(f"all pages: p50 {a.get('p50_ms')} ms, p95 {a.get('p95_ms')} ms ({a.get('n')} requests)")
