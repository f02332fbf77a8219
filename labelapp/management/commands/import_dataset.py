"""``python manage.py import_dataset DIR --name NAME [--replace]``: import a dataset folder."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labelapp.importing.report import ImportReport
from labelapp.services.imports import ImportRejected, dataset_import


class TqdmProgress:
    """One tqdm bar per stage, fed by the import service's ``progress(stage, done, total)``."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit=" rows", unit_scale=True)
        assert self.bar is not None
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Command(BaseCommand):
    help = "Import a dataset folder (cases.csv|parquet, events.csv|parquet, schema.json)."
    # The system checks import every view (URL checks), scikit-learn and DRF with them: about a
    # second, most of a small import's time. `manage.py check` and the server still run them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--name", help="Dataset name (default: the folder's name).")
        parser.add_argument("--replace", action="store_true", help="Replace a dataset of the name.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, directory: Path, name: str | None, replace: bool, **options) -> None:
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a folder")
        progress = TqdmProgress(enabled=not options["no_progress"])
        try:
            dataset = dataset_import(
                name=name or directory.name,
                source_dir=directory,
                replace=replace,
                progress=progress,
            )
        except ImportRejected as exc:
            progress.close()
            raise CommandError(f"import rejected.\n{exc.report.format_text()}") from exc
        progress.close()
        report = ImportReport.from_dict(dataset.import_report)
        if report.warnings or report.inferred:
            self.stdout.write(report.format_text())
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {dataset.name}: {dataset.n_cases} cases "
                f"({dataset.n_seed_positive} seed positives), {dataset.n_events} events."
            )
        )
