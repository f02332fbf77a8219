"""The dataset page's chart of model quality across versions (figures from the selector)."""

from __future__ import annotations

from typing import Any

from django.utils.safestring import SafeString

from labelapp.charts import line_chart
from labelapp.models import Dataset
from labelapp.selectors.version_quality import VersionQuality, dataset_version_quality

#: (series name, figure of :class:`VersionQuality` in [0, 1]) drawn in percent.
SERIES = (
    ("batch confirm rate %", "batch_confirm_rate"),
    ("top-k precision after training %", "after_precision"),
    ("top-k shared with parent %", "parent_overlap"),
)


def version_quality_chart(rows: list[VersionQuality]) -> SafeString | None:
    """One line per figure over the versions (x: the version's number); None without versions."""
    if not rows:
        return None
    series = []
    for name, attr in SERIES:
        points = [(r.version_id, getattr(r, attr)) for r in rows if getattr(r, attr) is not None]
        series.append((name, [x for x, _ in points], [100.0 * y for _, y in points]))
    return line_chart(
        series,
        title="Model quality across versions",
        x_label="model version",
        y_label="%",
        x_format="v{x:.0f}",
        y_max=100.0,
    )


def version_quality_context(dataset: Dataset) -> dict[str, Any]:
    rows = dataset_version_quality(dataset)
    return {"version_quality": rows, "version_quality_chart": version_quality_chart(rows)}


def _share(num: int, den: int) -> str:
    return f"{num / den:.0%} ({num} of {den})" if den else "no answers yet"


def _left(q: VersionQuality) -> str:
    if q.positives_left is None:
        return "n/a"
    level = f"{q.positives_left_level:.0%} " if q.positives_left_level else ""
    return (
        f"{q.positives_left:.0f} ({level}interval {q.positives_left_low:.0f} to "
        f"{q.positives_left_high:.0f})"
    )


def version_quality_compare_rows(a: VersionQuality, b: VersionQuality) -> list[dict[str, str]]:
    """Side-by-side rows of the compare page: (name, a, b) as text, counts included."""

    def overlap(q: VersionQuality) -> str:
        return "—" if q.parent_overlap is None else f"{q.parent_overlap:.0%} of v{q.parent_id}'s"

    return [
        {
            "name": "batch confirm rate",
            "a": _share(a.batch_confirmed, a.batch_answered),
            "b": _share(b.batch_confirmed, b.batch_answered),
        },
        {
            "name": f"top-{a.top_k} precision after training",
            "a": _share(a.after_confirmed, a.after_answered),
            "b": _share(b.after_confirmed, b.after_answered),
        },
        {"name": f"top-{a.top_k} shared with parent", "a": overlap(a), "b": overlap(b)},
        {"name": "positives left", "a": _left(a), "b": _left(b)},
    ]
