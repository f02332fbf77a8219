"""``python manage.py setup_demo [--data DIR]``: demo users and a demo dataset; safe to re-run.

Creates (or resets the passwords of) the demo admin ``admin``/``admin`` and the demo expert
``expert``/``expert``, then imports the built-in demo data (:mod:`labelapp.demo`), or DIR under
the folder's name, unless a dataset of that name exists.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelapp.demo import generate_demo_dataset
from labelapp.management.commands.import_dataset import TqdmProgress
from labelapp.models import Dataset
from labelapp.services.imports import ImportRejected, dataset_import
from labelapp.services.users import user_create_with_role

DEMO_USERS = (("admin", "admin", "admin"), ("expert", "expert", "expert"))
DEMO_NAME = "demo-cards"
DEMO_CASES = 12_000


class Command(BaseCommand):
    help = "Create the demo admin and expert and import demo data (or --data DIR)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--data", type=Path, help="Import this dataset folder instead.")
        parser.add_argument("--name", help="Dataset name (default: demo-cards or DIR's name).")
        parser.add_argument("--cases", type=int, default=DEMO_CASES, help="Size of the demo.")

    def handle(self, *args, data: Path | None, name: str | None, cases: int, **options) -> None:
        users = {
            role: user_create_with_role(username=username, password=password, role=role)
            for username, password, role in DEMO_USERS
        }
        name = name or (data.name.replace("_", "-") if data else DEMO_NAME)
        if Dataset.objects.filter(name=name).exists():
            self.stdout.write(f"Dataset {name} already imported; nothing to do.")
        else:
            admin = users["admin"]
            progress = TqdmProgress()
            try:
                if data is not None:
                    if not data.is_dir():
                        raise CommandError(f"{data} is not a folder")
                    dataset = dataset_import(
                        name=name, source_dir=data, user=admin, progress=progress
                    )
                else:
                    with tempfile.TemporaryDirectory() as tmp:
                        folder = generate_demo_dataset(Path(tmp) / name, n_cases=cases)
                        dataset = dataset_import(
                            name=name,
                            source_dir=folder,
                            user=admin,
                            progress=progress,
                            description="Built-in demo: simulated card transactions with "
                            "compromised terminals and customers (labelapp/demo.py).",
                        )
            except ImportRejected as exc:
                raise CommandError(f"import rejected.\n{exc.report.format_text()}") from exc
            finally:
                progress.close()
            self.stdout.write(
                f"Imported {dataset.name}: {dataset.n_cases} cases, "
                f"{dataset.n_seed_positive} seed positives, {dataset.n_events} events."
            )
        self.stdout.write(
            self.style.SUCCESS(
                "Demo logins: admin / admin (admin: imports, iterations), "
                "expert / expert (expert: labeling)."
            )
        )
