"""Find a dataset's files and stream them chunk by chunk (CSV via pandas, Parquet by batches).

CSV is UTF-8 text, plain or gzip-compressed (``cases.csv.gz``); :func:`sniff` says what a file is
and, when it is neither CSV nor Parquet, why (binary content, another encoding, a zip archive).
"""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
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
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
CSV_SUFFIXES = (".csv", ".txt")
#: Bytes (of the decompressed text) looked at to tell what a file is.
SNIFF_BYTES = 65536


@dataclass(frozen=True)
class SourceFile:
    """One input file: its role (cases/events), path, detected format (None: unsupported) and
    compression (``"gzip"`` for a ``.csv.gz``)."""

    role: str
    path: Path
    format: str | None
    compression: str | None = None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Sniffed:
    """What :func:`sniff` found: a format (and compression), or a problem code and message."""

    format: str | None
    compression: str | None = None
    code: str = ""
    message: str = ""


def sniff(path: Path) -> Sniffed:
    """Tell Parquet (magic bytes) from CSV (a .csv/.txt name, UTF-8 text, optionally gzip), and
    say what is wrong with anything else."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if head.startswith(PARQUET_MAGIC):
        return Sniffed("parquet")
    name = path.name.lower()
    compression = None
    if head.startswith(GZIP_MAGIC):
        if not name.endswith(tuple(f"{s}.gz" for s in CSV_SUFFIXES)):
            return Sniffed(
                None, code="not_csv_or_parquet", message="a gzip file: name it .csv.gz if it is CSV"
            )
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(SNIFF_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            return Sniffed(None, code="unreadable_file", message=f"broken gzip data: {exc}")
        compression = "gzip"
    elif head.startswith(ZIP_MAGIC):
        return Sniffed(
            None,
            code="not_csv_or_parquet",
            message="a zip archive (an .xlsx is one): send CSV, gzip-compressed CSV "
            "(.csv.gz) or Parquet",
        )
    elif not name.endswith(CSV_SUFFIXES):
        return Sniffed(
            None,
            code="not_csv_or_parquet",
            message="the file is neither CSV (.csv, .csv.gz) nor Parquet",
        )
    problem = text_problem(head)
    if problem is not None:
        return Sniffed(None, code=problem[0], message=problem[1])
    return Sniffed("csv", compression)


def text_problem(head: bytes) -> tuple[str, str] | None:
    """Why ``head`` (the start of a CSV) is not UTF-8 text: ``(code, message)``, or None."""
    if head.startswith(UTF16_BOMS):
        return "not_utf8", "the file is UTF-16 text; save it as UTF-8"
    nul = head.find(b"\x00")
    if nul >= 0:
        return (
            "binary_content",
            f"binary content (a NUL byte at byte {nul + 1}): not a text CSV file",
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        return "not_utf8", not_utf8_message(head, exc.start)
    return None


def not_utf8_message(data: bytes, offset: int, *, from_start: bool = True) -> str:
    """Where the text stops being UTF-8, and what it probably is instead.

    ``data`` is the file's start when ``from_start`` (the line is then named), else some block of
    it that a reader was decoding.
    """
    where = ""
    if from_start:
        line = data.count(b"\n", 0, offset) + 1
        where = f" on line {line} (byte {offset + 1})"
    guess = ""
    try:
        char = data[offset : offset + 1].decode("cp1252")
        guess = f" ({char!r} in Latin-1/Windows-1252: save the file as UTF-8)"
    except UnicodeDecodeError:
        pass
    return f"not UTF-8 text: byte 0x{data[offset]:02X}{where}{guess}"


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
    header = pd.read_csv(source.path, nrows=0, compression=source.compression, encoding="utf-8")
    return [str(c) for c in header.columns]


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
            source.path,
            chunksize=chunk_rows,
            usecols=columns,
            dtype=str,
            keep_default_na=True,
            compression=source.compression,
            encoding="utf-8",
        )
        with reader:
            yield from reader
    else:
        raise ValueError(f"{source.name}: neither CSV nor Parquet")


def read_schema(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
