"""``python manage.py benchmark_import DIR [--name NAME] [--out bench-out]``: import speed.

Imports DIR (replacing a dataset of the name), then loads all its features as NumPy; prints and
writes ``OUT/import.json``. See docs/benchmarks.md, "Import and feature loading".
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand

from labelapp.benchmarks.imports import run


class Command(BaseCommand):
    help = "Measure the import of a dataset folder and the loading of its features as NumPy."

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--name", help="Dataset name (default: bench-<folder name>).")
        parser.add_argument("--out", type=Path, default=Path("bench-out"))

    def handle(self, *args, directory: Path, name: str | None, out: Path, **options) -> None:
        name = name or f"bench-{directory.name}".replace("_", "-")
        report = run(directory, name=name, out_dir=out)
        self.stdout.write(json.dumps(report, indent=2))
