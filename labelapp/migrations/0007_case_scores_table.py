"""Scores move out of the case rows into ``CaseScore`` (one row per version and case).

Rewriting ``Case.score`` for 1M+ wide rows took minutes (about 7,000 rows/s on PostgreSQL: each
update copies the row and touches its seven indexes); a version's narrow rows load with ``COPY``
in seconds and are swapped in by moving ``Dataset.scores_model``. On PostgreSQL the table is
partitioned by version: a version's rows are loaded into a table of their own, indexed, and
attached (labelapp.services.case_scores); a version no longer shown is dropped whole. The scores
a dataset showed are carried over for the version they belonged to; where the old copy had not
finished, the dataset shows no version's scores until the reaper loads the current one
(``case_scores_sync_pending``).
"""

import django.db.models.deletion
from django.db import migrations, models

TABLE = "labelapp_casescore"
KEYSET_INDEX = "casescore_explorer_score"


def table_create(apps, schema_editor):
    """PostgreSQL: partitioned by version (each version's rows a table of their own, loaded,
    indexed, then attached; dropped whole). Elsewhere: one plain table."""
    postgres = schema_editor.connection.vendor == "postgresql"
    schema_editor.execute(
        f"CREATE TABLE {TABLE} (version_id bigint NOT NULL, case_id bigint NOT NULL, "
        "score double precision NOT NULL, percentile double precision NOT NULL, "
        "PRIMARY KEY (version_id, case_id))"
        + (" PARTITION BY LIST (version_id)" if postgres else "")
    )
    order = "score DESC NULLS LAST, case_id DESC" if postgres else "score, case_id"
    schema_editor.execute(f"CREATE INDEX {KEYSET_INDEX} ON {TABLE} (version_id, {order})")


def table_drop(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {TABLE} CASCADE")


def carry_over(apps, schema_editor):
    Dataset = apps.get_model("labelapp", "Dataset")
    postgres = schema_editor.connection.vendor == "postgresql"
    for dataset in Dataset.objects.exclude(scores_model=None):
        version = dataset.scores_model_id
        if dataset.scores_synced_rows < dataset.n_cases:
            Dataset.objects.filter(pk=dataset.pk).update(scores_model=None)
            continue
        if postgres:
            schema_editor.execute(
                f"CREATE TABLE {TABLE}_v{version} PARTITION OF {TABLE} FOR VALUES IN ({version})"
            )
        schema_editor.execute(
            f"INSERT INTO {TABLE} (version_id, case_id, score, percentile) "
            "SELECT %s, id, score, COALESCE(score_percentile, 0) FROM labelapp_case "
            "WHERE dataset_id = %s AND score IS NOT NULL",
            [version, dataset.pk],
        )


def case_index_drop(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS case_explorer_score")


CASE_SCORE = migrations.CreateModel(
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
            models.FloatField(help_text="Share (0-100] of the cases scoring at most this."),
        ),
    ],
)


class Migration(migrations.Migration):
    dependencies = [("labelapp", "0006_merge_hidden_checks_seeds_explorer")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[CASE_SCORE],
            database_operations=[migrations.RunPython(table_create, table_drop, elidable=False)],
        ),
        migrations.RunPython(carry_over, migrations.RunPython.noop, elidable=False),
        migrations.RunPython(case_index_drop, migrations.RunPython.noop, elidable=False),
        migrations.RemoveIndex(model_name="case", name="labelapp_ca_dataset_daa6c7_idx"),
        migrations.RemoveField(model_name="case", name="score"),
        migrations.RemoveField(model_name="case", name="score_percentile"),
        migrations.RemoveField(model_name="dataset", name="scores_synced_rows"),
    ]
