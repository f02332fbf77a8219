"""The import report: every problem found, grouped by file, problem and column, with counts."""

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
    """All problems of an import attempt, plus what was read (files, rows, inferred schema)."""

    problems: list[Problem] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    schema: dict[str, Any] = field(default_factory=dict)

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
        rows = list(rows or [])
        n = count if count is not None else max(len(rows), 1)
        for problem in self.problems:
            if (problem.file, problem.code, problem.column) == (file, code, column):
                problem.count += n
                problem.rows.extend(rows[: MAX_ROWS_SHOWN - len(problem.rows)])
                return
        self.problems.append(Problem(file, code, message, column, n, rows[:MAX_ROWS_SHOWN]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": [asdict(p) for p in self.problems],
            "files": self.files,
            "schema": self.schema,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        return cls(
            problems=[Problem(**p) for p in data.get("problems", [])],
            files=dict(data.get("files", {})),
            schema=dict(data.get("schema", {})),
        )

    def format_text(self) -> str:
        """A plain-text table for the terminal."""
        if self.ok:
            return "No problems."
        lines = [f"{len(self.problems)} problem(s); nothing was imported:"]
        for p in self.problems:
            where = f"{p.file}" + (f", column {p.column!r}" if p.column else "")
            more = ", ..." if p.count > len(p.rows) else ""
            rows = f" (rows {', '.join(map(str, p.rows))}{more})"
            lines.append(f"  - {where}: {p.message} x{p.count}{rows if p.rows else ''}")
        return "\n".join(lines)


class ImportRejected(Exception):
    """The data has problems; nothing was written. ``report`` says what and where."""

    def __init__(self, report: ImportReport):
        self.report = report
        super().__init__(report.format_text())
