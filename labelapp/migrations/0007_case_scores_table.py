"""Scores move out of the case rows into ``CaseScore`` (one row per version and case).

Rewriting ``Case.score`` for 1M+ wide rows took minutes (about 7,000 rows/s on PostgreSQL: each
update copies the row and touches its seven indexes); a version's narrow rows load with ``COPY``
in seconds and are swapped in by moving ``Dataset.scores_model``. The scores a dataset showed are
carried over for the version they belonged to; where the old copy had not finished, the dataset
shows no version's scores until the reaper loads the current one (``case_scores_sync_pending``).
"""

import django.db.models.deletion
from django.db import migrations, models

KEYSET_INDEX = "casescore_explorer_score"


def carry_over(apps, schema_editor):
    Dataset = apps.get_model("labelapp", "Dataset")
    complete = []
    for dataset in Dataset.objects.exclude(scores_model=None):
        if dataset.scores_synced_rows >= dataset.n_cases:
            complete.append(dataset.pk)
        else:
            Dataset.objects.filter(pk=dataset.pk).update(scores_model=None)
    if not complete:
        return
    schema_editor.execute(
        "INSERT INTO labelapp_casescore (version_id, case_id, score, percentile) "
        "SELECT d.scores_model_id, c.id, c.score, COALESCE(c.score_percentile, 0) "
        "FROM labelapp_case c JOIN labelapp_dataset d ON d.id = c.dataset_id "
        f"WHERE c.score IS NOT NULL AND d.id IN ({', '.join(str(pk) for pk in complete)})"
    )


def keyset_index_create(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS case_explorer_score")
    postgres = schema_editor.connection.vendor == "postgresql"
    order = "score DESC NULLS LAST, case_id DESC" if postgres else "score, case_id"
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {KEYSET_INDEX} ON labelapp_casescore (version_id, {order})"
    )


def keyset_index_drop(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX IF EXISTS {KEYSET_INDEX}")


class Migration(migrations.Migration):
    dependencies = [("labelapp", "0006_merge_hidden_checks_seeds_explorer")]

    operations = [
        migrations.CreateModel(
            name="CaseScore",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "version_id",
                        "case_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "version",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="labelapp.modelversion",
                    ),
                ),
                (
                    "case",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="scores",
                        to="labelapp.case",
                    ),
                ),
                ("score", models.FloatField()),
                (
                    "percentile",
                    models.FloatField(
                        help_text="Share (0-100] of the cases scoring at most this."
                    ),
                ),
            ],
        ),
        migrations.RunPython(carry_over, migrations.RunPython.noop, elidable=False),
        migrations.RunPython(keyset_index_create, keyset_index_drop, elidable=False),
        migrations.RemoveIndex(model_name="case", name="labelapp_ca_dataset_daa6c7_idx"),
        migrations.RemoveField(model_name="case", name="score"),
        migrations.RemoveField(model_name="case", name="score_percentile"),
        migrations.RemoveField(model_name="dataset", name="scores_synced_rows"),
    ]
