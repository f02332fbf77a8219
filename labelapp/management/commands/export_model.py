"""``manage.py export_model --version ID --out FILE.zip``: a model version as an export bundle."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelapp.models import ModelVersion
from labelapp.services.export import ExportError, model_version_export


class Command(BaseCommand):
    help = "Export a model version as a sealed bundle that scores outside the app."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # ``--version ID`` replaces Django's own ``--version`` (which prints Django's version).
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--version", dest="model_version", type=int, required=True)
        parser.add_argument("--out", type=Path, required=True, help="the bundle's path (.zip)")

    def handle(self, *args, model_version: int, out: Path, **options):
        try:
            version = ModelVersion.objects.select_related("dataset").get(pk=model_version)
        except ModelVersion.DoesNotExist as exc:
            raise CommandError(f"no model version {model_version}") from exc
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            manifest = model_version_export(model_version=version, out=out, via="command")
        except ExportError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"exported model version {version.pk} ({version.dataset.name}): {out} "
            f"({out.stat().st_size} bytes, {len(manifest.files)} files + manifest)"
        )
