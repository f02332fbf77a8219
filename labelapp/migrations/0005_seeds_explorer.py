"""Indexes of the case explorer's keyset pages: (dataset, score DESC NULLS LAST, id DESC) and
(dataset, ts DESC NULLS LAST, id DESC).

PostgreSQL gets them with the sort order the pages ask for; SQLite (which sorts NULLs first
ascending, so last descending, and has no NULLS clause in an index) gets plain ascending ones,
scanned backwards. The model does not declare them: NULLS LAST in an index is not portable.
"""

from django.db import migrations

INDEXES = {
    "case_explorer_score": "score",
    "case_explorer_ts": "ts",
}


def create(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    for name, column in INDEXES.items():
        order = f"{column} DESC NULLS LAST, id DESC" if postgres else f"{column}, id"
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON labelapp_case (dataset_id, {order})"
        )


def drop(apps, schema_editor):
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("labelapp", "0004_case_scores_synced")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
