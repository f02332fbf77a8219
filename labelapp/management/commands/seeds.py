"""``manage.py seeds --dataset NAME (--rule EXPR | --ids FILE | --case ID) [--dry-run] [--remove]``:
mark (or unmark) seed positives, with the same rules, preview and audit as the Seeds page;
``--undo CHANGE`` undoes a change (its number on the Seeds page)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelapp.models import AuditEvent, Dataset
from labelapp.selectors.seeds import SeedSource, seed_ids_parse, seed_preview
from labelapp.services.seeds import SeedUndoError, seeds_apply, seeds_undo


class Command(BaseCommand):
    help = (
        "Mark seed positives (known positives the model trains on) from a rule over the case "
        "columns, a file of case ids, or one case; --remove unmarks. --dry-run only previews."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="Dataset name.")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--rule", help='A condition, e.g. "amount > 220 and is_night == 1".')
        source.add_argument(
            "--ids", type=Path, help="A file of case ids: one per line, or a CSV with case_id."
        )
        source.add_argument("--case", help="One case id.")
        source.add_argument("--undo", type=int, help="Undo this change (# on the Seeds page).")
        parser.add_argument("--dry-run", action="store_true", help="Preview only; change nothing.")
        parser.add_argument("--remove", action="store_true", help="Unmark instead of mark.")

    def handle(self, *args, dataset: str, rule, ids, case, undo, dry_run, remove, **options):
        target = Dataset.objects.filter(name=dataset, status=Dataset.Status.READY).first()
        if target is None:
            raise CommandError(f"no ready dataset named {dataset!r}")
        if undo is not None:
            self._undo(target, undo)
            return
        if ids is not None:
            if not ids.is_file():
                raise CommandError(f"no file {ids}")
            source = SeedSource(case_ids=tuple(seed_ids_parse(ids.read_text(errors="replace"))))
        elif case is not None:
            source = SeedSource(case_ids=(case,))
        else:
            source = SeedSource(rule=rule)
        try:
            if dry_run:
                preview = seed_preview(target, source, remove=remove)
                self._report(preview, verb="would " + ("unmark" if remove else "mark"))
                return
            result = seeds_apply(dataset=target, source=source, remove=remove, via="command")
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self._report(result.preview, verb="unmarked" if remove else "marked")
        if result.event is not None:
            self.stdout.write(
                f"audit event #{result.event.pk}; the dataset has "
                f"{Dataset.objects.get(pk=target.pk).n_seed_positive} seed positives now"
            )

    def _undo(self, dataset: Dataset, change: int) -> None:
        event = AuditEvent.objects.filter(pk=change, dataset=dataset).first()
        if event is None:
            raise CommandError(f"no change #{change} in dataset {dataset.name}")
        try:
            undo = seeds_undo(event=event, via="command")
        except SeedUndoError as exc:
            raise CommandError(str(exc)) from exc
        since = undo.data["changed_since"]
        self.stdout.write(
            f"change #{change} undone: {undo.data['n_restored']} cases restored"
            + (f"; changed since and left as they are: {', '.join(since[:20])}" if since else "")
        )

    def _report(self, preview, *, verb: str) -> None:
        self.stdout.write(
            f"{preview.n_matched} cases matched; {verb} {preview.n_change}; "
            f"already {'not seeds' if preview.remove else 'seeds'}: {preview.n_already}"
        )
        for reason, n in preview.not_changed.items():
            self.stdout.write(f"  not changed, {reason}: {n}")
        if preview.sample and preview.n_change:
            self.stdout.write("  e.g. " + ", ".join(c.case_id for c in preview.sample[:10]))
