"""Find a dataset's files and stream them chunk by chunk (CSV via pandas, Parquet by batches)."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

CASES = "cases"
EVENTS = "events"
SCHEMA = "schema"
CHUNK_ROWS = 100_000
PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class SourceFile:
    """One input file: its role (cases/events), path, and detected format (None: unsupported)."""

    role: str
    path: Path
    format: str | None

    @property
    def name(self) -> str:
        return self.path.name


def detect_format(path: Path) -> str | None:
    """``"parquet"``, ``"csv"``, or None for anything else (a binary file named .csv, an .xlsx).

    Parquet is recognised by its magic bytes, CSV by its extension and text content.
    """
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if path.suffix.lower() not in {".csv", ".txt"} or b"\x00" in head:
        return None
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    return "csv"


def find_files(
    source_dir: Path | None = None, files: Mapping[str, Path] | None = None
) -> dict[str, list[Path]]:
    """Candidate paths per role (``cases``, ``events``, ``schema``) from a folder or a mapping.

    In a folder, a file belongs to a role by the part of its name before the first dot
    (``cases.csv``, ``cases.parquet``, ``events.csv.gz``...), and ``schema.json`` is the schema.
    """
    found: dict[str, list[Path]] = {CASES: [], EVENTS: [], SCHEMA: []}
    if files is not None:
        for role, path in files.items():
            if path is not None:
                found[role].append(Path(path))
        return found
    assert source_dir is not None
    for path in sorted(Path(source_dir).iterdir()):
        if not path.is_file():
            continue
        stem = path.name.split(".")[0].lower()
        if path.name.lower() == "schema.json":
            found[SCHEMA].append(path)
        elif stem in (CASES, EVENTS):
            found[stem].append(path)
    return found


def read_columns(source: SourceFile) -> list[str]:
    if source.format == "parquet":
        return list(pq.ParquetFile(source.path).schema_arrow.names)
    return [str(c) for c in pd.read_csv(source.path, nrows=0).columns]


def count_rows_hint(source: SourceFile) -> int | None:
    """Row count when it is cheap to know (Parquet metadata); None for CSV."""
    if source.format == "parquet":
        return pq.ParquetFile(source.path).metadata.num_rows
    return None


def iter_chunks(
    source: SourceFile, *, columns: list[str] | None = None, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Yield the file as DataFrames of at most ``chunk_rows`` rows, never the whole file.

    CSV values come as strings (NaN where empty), so that types are checked by us, the same way
    for every chunk; Parquet values keep their stored types.
    """
    if source.format == "parquet":
        parquet = pq.ParquetFile(source.path)
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
    elif source.format == "csv":
        reader = pd.read_csv(
            source.path, chunksize=chunk_rows, usecols=columns, dtype=str, keep_default_na=True
        )
        with reader:
            yield from reader
    else:
        raise ValueError(f"{source.name}: neither CSV nor Parquet")


def read_schema(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
