"""``manage.py export_cases --dataset NAME --out DIR [--limit N]``: a dataset's cases and their
events in the dataset format, e.g. to score them with an exported model outside the app."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelapp.models import Dataset
from labelapp.services.dataset_export import dataset_cases_export


class Command(BaseCommand):
    help = "Write a dataset's cases (and their entities' events) as Parquet files into DIR."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="Dataset name.")
        parser.add_argument("--out", type=Path, required=True, help="Folder to write into.")
        parser.add_argument("--limit", type=int, help="Only the first N cases.")

    def handle(self, *args, dataset: str, out: Path, limit: int | None, **options):
        target = Dataset.objects.filter(name=dataset, status=Dataset.Status.READY).first()
        if target is None:
            raise CommandError(f"no ready dataset named {dataset!r}")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        written = dataset_cases_export(dataset=target, out_dir=out, limit=limit)
        line = f"wrote {written['n_cases']} cases to {written['cases']}"
        if "events" in written:
            line += f" and {written['n_events']} events to {written['events']}"
        self.stdout.write(line)
