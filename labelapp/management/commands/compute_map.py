"""``python manage.py compute_map (--version ID | --dataset NAME) [--sample N] [--queue]``.

Computes the map of a model version's cases (the one on its page) here, in this process, and
prints where it was written and how long each step took; with ``--queue`` a worker computes it
instead. ``--dataset`` takes the dataset's current model version.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from learning.projection import DEFAULT_SAMPLE_SIZE


class Command(BaseCommand):
    help = "Compute the 2-D map of a model version's cases (shown on the version's page)."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs):
        # ``--version`` names the model version here: it replaces Django's --version option.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--version", type=int, help="Model version id (as in /models/ID/).")
        which.add_argument("--dataset", help="A dataset name: its current model version.")
        parser.add_argument(
            "--sample", type=int, default=DEFAULT_SAMPLE_SIZE, help="Cases on the map."
        )
        parser.add_argument("--seed", type=int, default=0, help="Seed of the sample and UMAP.")
        parser.add_argument(
            "--queue", action="store_true", help="Leave it to a worker instead of computing here."
        )

    def handle(self, *args, version, dataset, sample, seed, queue, **options) -> None:
        from labelapp.models import Dataset, ModelVersion
        from labelapp.selectors.case_map import case_map_path
        from labelapp.services.case_map import CaseMapError, case_map_build, case_map_request

        if sample < 1:
            raise CommandError("--sample must be at least 1")
        if dataset is not None:
            found = Dataset.objects.filter(name=dataset).first()
            if found is None:
                raise CommandError(f"no dataset named {dataset!r}")
            if found.current_model_id is None:
                raise CommandError(f"dataset {dataset!r} has no current model version")
            version = found.current_model_id
        model_version = ModelVersion.objects.select_related("dataset").filter(pk=version).first()
        if model_version is None:
            raise CommandError(f"no model version {version}")
        if queue:
            case_map_request(model_version=model_version, via="command")
            self.stdout.write(f"queued the map of model v{model_version.pk} for a worker")
            return
        started = time.perf_counter()
        try:
            result = case_map_build(
                model_version=model_version, sample_size=sample, random_state=seed
            )
        except CaseMapError as exc:
            raise CommandError(str(exc)) from exc
        seconds = ", ".join(f"{k} {v:.1f}s" for k, v in result["seconds"].items())
        self.stdout.write(
            f"map of model v{model_version.pk} ({model_version.dataset.name}): "
            f"{result['sample_size']:,} of {result['n_cases']:,} cases, {result['method']} of "
            f"{result['space']['label']}; {seconds} "
            f"(wall {time.perf_counter() - started:.1f}s with imports)\n"
            f"counts {result['counts']}\n"
            f"written to {case_map_path(model_version)}"
        )
