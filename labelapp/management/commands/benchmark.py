"""``python manage.py benchmark --data DIR --out DIR [...]``: replay the active PU loop.

A thin wrapper over :func:`learning.benchmark.run_benchmark`; with ``--embeddings auto`` and a
dataset that has events it first gets the Auto Risk embeddings from ``encoders.api``.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from learning.bench.harness import build_parser as library_parser
from learning.bench.harness import run_benchmark, settings_from_args
from learning.features import load_dataset


class Command(BaseCommand):
    help = "Benchmark active PU learning against baselines with a simulated expert."

    def add_arguments(self, parser) -> None:
        # The library's own options, so the command and `python -m learning.benchmark` agree.
        for action in library_parser()._actions:
            if action.dest == "help" or not action.option_strings:
                continue
            kwargs = {"dest": action.dest, "default": action.default, "help": action.help}
            if action.const is True and action.nargs == 0:
                kwargs["action"] = "store_true"
            else:
                kwargs["type"] = action.type
                kwargs["required"] = action.required
            parser.add_argument(*action.option_strings, **kwargs)
        parser.add_argument("--embeddings", choices=["auto", "none"], default="none")
        parser.add_argument("--embedding-minutes", type=float, default=5.0)
        parser.add_argument("--embedding-cache", type=Path, default=Path("var/embeddings"))

    def handle(self, *args, **options) -> None:
        import argparse

        data = Path(options["data"])
        if not data.exists():
            raise CommandError(f"no dataset folder at {data}")
        embeddings = None
        if options["embeddings"] == "auto":
            embeddings = self._embeddings(data, options)
        elif options.get("embeddings_file"):
            import numpy as np

            embeddings = np.load(options["embeddings_file"])
        settings = settings_from_args(argparse.Namespace(**options))
        run_benchmark(
            data,
            options["out"],
            embeddings=embeddings,
            log=lambda line: self.stdout.write(line),
            **settings,
        )

    def _embeddings(self, data: Path, options: dict):
        if load_dataset(data).events_path is None:
            self.stdout.write(f"{data.name} has no events: running without embeddings")
            return None
        try:
            from encoders.api import embeddings_for_dataset
        except ImportError as exc:
            self.stdout.write(f"encoders are not available ({exc}): running without embeddings")
            return None
        self.stdout.write(
            f"embedding {data.name} (pretraining up to {options['embedding_minutes']} min)..."
        )
        return embeddings_for_dataset(
            data, cache_dir=options["embedding_cache"], minutes=options["embedding_minutes"]
        )
