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


def version_quality_rows(q: VersionQuality) -> list[tuple[str, str]]:
    """(name, text) of each figure of one version, counts included."""
    overlap = "—" if q.parent_overlap is None else f"{q.parent_overlap:.0%} of v{q.parent_id}'s"
    return [
        ("batch confirm rate", _share(q.batch_confirmed, q.batch_answered)),
        (f"top-{q.top_k} precision after training", _share(q.after_confirmed, q.after_answered)),
        (f"top-{q.top_k} shared with parent", overlap),
        ("positives left", _left(q)),
    ]


def version_quality_compare_rows(a: VersionQuality, b: VersionQuality) -> list[dict[str, str]]:
    """Side-by-side rows of the compare page: (name, a, b) as text, counts included."""
    return [
        {"name": name, "a": text_a, "b": text_b}
        for (name, text_a), (_, text_b) in zip(
            version_quality_rows(a), version_quality_rows(b), strict=True
        )
    ]
