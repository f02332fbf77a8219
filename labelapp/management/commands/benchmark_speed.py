"""``python manage.py benchmark_speed --part PART --out DIR [--quick]``: speed benchmarks.

Each part lives beside the code it measures and exposes ``main(out_dir, quick) -> dict``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

PARTS = {
    "learning": "learning.bench.speed",
    "encoder": "encoders.bench.speed",
    "web": "labelapp.benchmarks.web",
    "explorer": "labelapp.benchmarks.explorer",
    "neighbors": "learning.bench.neighbors_speed",
    "loop": "labelapp.benchmarks.loop",
    "import": "labelapp.benchmarks.imports",
}


class Command(BaseCommand):
    help = "Measure speed and memory of one part of the system; writes DIR/speed_<part>.json."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--part", required=True, choices=sorted(PARTS))
        parser.add_argument("--out", default="bench-out", type=Path)
        parser.add_argument("--quick", action="store_true", help="A smaller, faster measurement.")

    def handle(self, *args, part: str, out: Path, quick: bool, **options) -> None:
        try:
            module = importlib.import_module(PARTS[part])
        except ModuleNotFoundError as exc:
            raise CommandError(f"the {part!r} benchmark is not available: {exc}") from exc
        out.mkdir(parents=True, exist_ok=True)
        report = module.main(out, quick)
        self.stdout.write(json.dumps(report, indent=2, default=str)[:4000])
