"""The import report: every problem found, grouped by file, problem and column, with counts;
warnings that do not stop the import; and the column types that were inferred."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_ROWS_SHOWN = 5


@dataclass
class Problem:
    """One kind of problem in one column of one file.

    ``rows`` are the first few data row numbers (1 = the first row after the header).
    """

    file: str
    code: str
    message: str
    column: str = ""
    count: int = 1
    rows: list[int] = field(default_factory=list)


@dataclass
class ImportReport:
    """All problems of an import attempt, plus what was read (files, rows, inferred schema).

    ``warnings`` have the shape of problems but do not stop the import; ``inferred`` maps each
    table to the columns whose type was inferred (no ``schema.json`` for it) and that type.
    """

    problems: list[Problem] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    schema: dict[str, Any] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    inferred: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(
        self,
        file: str,
        code: str,
        message: str,
        *,
        column: str = "",
        rows: list[int] | None = None,
        count: int | None = None,
    ) -> None:
        """Record ``count`` occurrences (default: ``len(rows)`` or 1), merged with earlier ones."""
        _merge(self.problems, file, code, message, column, rows, count)

    def warn(
        self,
        file: str,
        code: str,
        message: str,
        *,
        column: str = "",
        rows: list[int] | None = None,
        count: int | None = None,
    ) -> None:
        """Like :meth:`add`, for something the importer should know but that imports."""
        _merge(self.warnings, file, code, message, column, rows, count)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": [asdict(p) for p in self.problems],
            "warnings": [asdict(p) for p in self.warnings],
            "files": self.files,
            "schema": self.schema,
            "inferred": self.inferred,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        return cls(
            problems=[Problem(**p) for p in data.get("problems", [])],
            files=dict(data.get("files", {})),
            schema=dict(data.get("schema", {})),
            warnings=[Problem(**p) for p in data.get("warnings", [])],
            inferred=dict(data.get("inferred", {})),
        )

    def format_text(self) -> str:
        """A plain-text table for the terminal."""
        lines = []
        if self.ok:
            lines.append("No problems.")
        else:
            lines.append(f"{len(self.problems)} problem(s); nothing was imported:")
            lines += [_line(p) for p in self.problems]
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s):")
            lines += [_line(p) for p in self.warnings]
        for table, columns in self.inferred.items():
            types = ", ".join(f"{name} {kind}" for name, kind in columns.items())
            lines.append(f"Inferred {table} column types (no schema.json): {types}")
        return "\n".join(lines)


def _merge(
    entries: list[Problem],
    file: str,
    code: str,
    message: str,
    column: str,
    rows: list[int] | None,
    count: int | None,
) -> None:
    rows = list(rows or [])
    n = count if count is not None else max(len(rows), 1)
    for entry in entries:
        if (entry.file, entry.code, entry.column) == (file, code, column):
            entry.count += n
            entry.rows.extend(rows[: MAX_ROWS_SHOWN - len(entry.rows)])
            return
    entries.append(Problem(file, code, message, column, n, rows[:MAX_ROWS_SHOWN]))


def _line(p: Problem) -> str:
    where = f"{p.file}" + (f", column {p.column!r}" if p.column else "")
    more = ", ..." if p.count > len(p.rows) else ""
    rows = f" (rows {', '.join(map(str, p.rows))}{more})"
    return f"  - {where}: {p.message} x{p.count}{rows if p.rows else ''}"


class ImportRejected(Exception):
    """The data has problems; nothing was written. ``report`` says what and where."""

    def __init__(self, report: ImportReport):
        self.report = report
        super().__init__(report.format_text())
