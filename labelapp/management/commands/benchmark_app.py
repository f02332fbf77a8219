"""``python manage.py benchmark_app --data DIR --out DIR``: the harness's protocol through the app.

A thin wrapper over :func:`labelapp.benchmarks.app_loop.run_benchmark_app`; loop parameters not
given keep :class:`learning.loop.LoopParams`'s defaults, the app's own.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from learning.bench.harness import add_loop_arguments, loop_arguments
from learning.loop import LoopParamsError


class Command(BaseCommand):
    help = (
        "Run the benchmark protocol through the product (import, Celery workers, answers through "
        "the REST API, the export bundle) beside the harness's active_pu, and write the report."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--data", required=True, type=Path, help="Dataset folder (with label).")
        parser.add_argument("--out", required=True, type=Path, help="Report folder.")
        parser.add_argument("--iterations", type=int, default=10)
        parser.add_argument("--seed-fraction", type=float, default=0.1)
        parser.add_argument("--expert-recall", type=float, default=0.9)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--workers",
            type=int,
            default=2,
            help="Celery workers to start (0: use the running ones on the default queue).",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=1,
            help="LightGBM threads of the harness and of each worker started (LOOP_THREADS).",
        )
        parser.add_argument(
            "--api-url",
            default=None,
            help="Answer through a live server at this URL (default: in process, through "
            "Django's full request stack).",
        )
        parser.add_argument(
            "--no-harness", action="store_true", help="Skip the harness's active_pu beside it."
        )
        add_loop_arguments(parser, defaults={"random_state": "--seed"})

    def handle(self, *args, **options) -> None:
        from labelapp.benchmarks.app_loop import run_benchmark_app

        data = Path(options["data"])
        if not (data / "cases.parquet").exists() and not (data / "cases.csv").exists():
            raise CommandError(f"no dataset folder (cases.parquet or cases.csv) at {data}")
        loop = loop_arguments(_Namespace(options))
        loop.setdefault("random_state", options["seed"])
        try:
            run_benchmark_app(
                data,
                options["out"],
                iterations=options["iterations"],
                seed_fraction=options["seed_fraction"],
                expert_recall=options["expert_recall"],
                seed=options["seed"],
                workers=options["workers"],
                threads=options["threads"],
                api_url=options["api_url"],
                harness=not options["no_harness"],
                log=lambda line: self.stdout.write(line),
                **loop,
            )
        except (LoopParamsError, RuntimeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc


class _Namespace:
    def __init__(self, options: dict):
        self.__dict__.update(options)
