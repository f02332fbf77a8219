"""``manage.py make_scaled_dataset --data DIR --factor 10 --out DIR``: a dataset made N times
larger for the scale benchmarks (fresh case, customer and terminal ids per copy, times kept)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelapp.benchmarks.scaled_dataset import make_scaled_dataset


class Command(BaseCommand):
    help = (
        "Write FACTOR copies of a dataset folder's cases and events into OUT, each copy with "
        "fresh case, entity and *_id ids and the same times (copy 0 keeps the original ids)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", type=Path, required=True, help="A dataset folder.")
        parser.add_argument("--factor", type=int, default=10, help="Number of copies (10).")
        parser.add_argument("--out", type=Path, required=True, help="Folder to write into.")

    def handle(self, *args, data: Path, factor: int, out: Path, **options):
        try:
            result = make_scaled_dataset(data, out, factor=factor, log=self.stdout.write)
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"wrote {result['cases']:,} cases and {result['events']:,} events "
            f"({factor} copies) to {out}"
        )
