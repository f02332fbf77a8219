"""``python manage.py pretrain_encoder (--dataset NAME | --data DIR) [--minutes N] [--out PATH]``.

Pretrains the Auto Risk encoder on a dataset's behavior sequences (masked event modeling +
Quick Thought) for at most N minutes, with a progress bar and a loss log, and writes one
checkpoint file usable by the app (``encoders.checkpoint.load``).
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm


class Command(BaseCommand):
    help = "Pretrain the Auto Risk sequence encoder on a dataset; writes one checkpoint file."

    def add_arguments(self, parser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--dataset", help="Name of an imported dataset (its snapshot is read).")
        source.add_argument("--data", type=Path, help="A dataset folder in the SPEC's format.")
        parser.add_argument("--minutes", type=float, default=5.0, help="Time budget (wall clock).")
        parser.add_argument(
            "--out", type=Path, help="Checkpoint path (default: <data>/encoder.pt)."
        )
        parser.add_argument("--seed", type=int, default=0)

    def handle(
        self,
        *args,
        dataset: str | None,
        data: Path | None,
        minutes: float,
        out: Path | None,
        seed: int,
        **options,
    ) -> None:
        from encoders.api import pretrain_for_dataset

        if dataset is not None:
            from labelapp.models import Dataset
            from labelapp.selectors.datasets import dataset_snapshot_dir

            try:
                data = dataset_snapshot_dir(dataset)
            except Dataset.DoesNotExist as exc:
                raise CommandError(f"no dataset named {dataset!r}") from exc
        if not data.is_dir():
            raise CommandError(f"{data} is not a dataset folder")
        out = out or data / "encoder.pt"
        bar = tqdm(total=1, unit="step", desc="pretraining")

        def progress(done: int, total: int, info: dict) -> None:
            bar.total = total
            bar.n = done
            bar.set_postfix(mem=f"{info['mem']:.3f}", qt=f"{info['qt']:.3f}")
            bar.refresh()
            bar.write(f"step {done}: mem={info['mem']:.4f} qt={info['qt']:.4f}")

        try:
            path = pretrain_for_dataset(data, out, minutes=minutes, progress=progress, seed=seed)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        self.stdout.write(self.style.SUCCESS(f"checkpoint written to {path}"))
