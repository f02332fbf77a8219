"""``manage.py export_rules --version ID --out rules.json``: a model version's readable rules."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelapp.models import ModelVersion
from labelapp.services.model_versions import json_write
from labelapp.services.rules import RuleParams, RulesError, rules_export


class Command(BaseCommand):
    help = (
        "Write a model version's strongest segments as rules over the hand features: "
        '{"rules": [{"rule": "...", "coverage": n, "precision": p, ...}]}.'
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # ``--version ID`` replaces Django's own ``--version`` (which prints Django's version).
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--version", dest="model_version", type=int, required=True)
        parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
        defaults = RuleParams()
        for name, help_text in RuleParams.HELP.items():
            low, high = RuleParams.BOUNDS[name]
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                default=None,
                help=f"{help_text} ({low} to {high}; default {getattr(defaults, name)})",
            )

    def handle(self, *args, model_version: int, out: Path, **options):
        try:
            version = ModelVersion.objects.select_related("dataset").get(pk=model_version)
        except ModelVersion.DoesNotExist as exc:
            raise CommandError(f"no model version {model_version}") from exc
        try:
            params = RuleParams.from_mapping({k: options.get(k) for k in RuleParams.HELP})
            result = rules_export(version=version, actor=None, via="command", params=params)
        except RulesError as exc:
            raise CommandError(str(exc)) from exc
        out.parent.mkdir(parents=True, exist_ok=True)
        json_write(out, result)
        self.stdout.write(
            f"wrote {len(result['rules'])} rule(s) of model version {version.pk} "
            f"({version.dataset.name}) to {out}"
        )
        for rule in result["rules"]:
            precision = "n/a" if rule["precision"] is None else f"{rule['precision']:.3f}"
            self.stdout.write(
                f"  {rule['rule']}: covers {rule['coverage']}, precision {precision} "
                f"over {rule['n_known']} known"
            )
