"""Model export bundles: a zip that carries a trained model out of the app, sealed against change.

Layout of a bundle (every member at the top level)::

    manifest.json       format, version, what the model is, and the SHA-256 and size of every file
    model.txt           the LightGBM booster in LightGBM's native text format
    feature_spec.json   columns, types, categorical mappings, label-derived features, embeddings
    positives.parquet   the positives the label-derived features count (when the spec uses them)
    params.json         training parameters
    metrics.json        measured performance
    model_card.md       data, iterations, labels used, performance, known limits
    encoder.pt          encoder weights and config (only when the model uses embeddings)

Two checks guard a bundle, so that a single changed byte anywhere in the file is refused:

1. ``manifest.json`` lists the SHA-256 of every other member; a member that differs, is missing,
   or is not listed is refused (this check also works on an unpacked bundle folder).
2. The zip's archive comment is a *seal*: the SHA-256 of every byte of the archive before its
   end-of-central-directory record (local headers, file data, central directory), and the end
   record's own fields are checked against the archive. This covers what the manifest cannot:
   the manifest itself and the zip's metadata.

The seal is an integrity check (accidental or careless change), not a signature: whoever can
rewrite the whole bundle can reseal it.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

FORMAT = "pu-workbench-model-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_FILES = ("model.txt", "feature_spec.json", "params.json", "metrics.json", "model_card.md")
SEAL_PREFIX = b"pu-bundle-seal sha256:"
SEAL_LENGTH = len(SEAL_PREFIX) + 64
# Every member gets the same timestamp and mode, so that one export is byte-for-byte repeatable.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o100644 << 16
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record (without its comment)
_EOCD_SIGNATURE = b"PK\x05\x06"
_CHUNK = 1 << 20


class BundleError(ValueError):
    """The bundle cannot be used: it is not a bundle, it is damaged, or it was changed."""


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` says.

    Attributes
    ----------
    files : dict of str to dict
        For every member but the manifest: ``{"sha256": hex, "size": bytes}``.
    info : dict
        Free description of the model (model version id, dataset, created at, ...).
    """

    files: dict[str, dict]
    info: dict = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        payload = {
            "format": self.format,
            "format_version": self.format_version,
            "info": self.info,
            "files": {name: self.files[name] for name in sorted(self.files)},
        }
        return json.dumps(payload, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            payload = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{MANIFEST} is not valid JSON ({exc}): bundle damaged") from exc
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise BundleError(f"{MANIFEST} does not describe a {FORMAT}")
        if payload.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {payload.get('format_version')!r} is not supported "
                f"(this scorer reads version {FORMAT_VERSION})"
            )
        files = payload.get("files")
        if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values()
        ):
            raise BundleError(f"{MANIFEST} has no valid 'files' table")
        return cls(files=files, info=payload.get("info") or {})


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_member_name(name: str) -> None:
    if name == MANIFEST or "/" in name or "\\" in name or name.startswith(".") or not name:
        raise ValueError(f"invalid bundle member name {name!r} (plain top-level names only)")


def write_bundle(
    out: Path | str | io.BufferedIOBase,
    files: Mapping[str, Path | bytes | str],
    *,
    info: Mapping | None = None,
) -> Manifest:
    """Write a sealed bundle.

    Parameters
    ----------
    out : path or binary file object
        Where the zip goes (a path is written atomically through a ``.part`` file).
    files : mapping of member name to a path, bytes or text
        The members; :data:`REQUIRED_FILES` must be among them.
    info : mapping, optional
        Description stored in the manifest (model version, dataset, ...); JSON-serializable.

    Returns
    -------
    Manifest
    """
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise ValueError(f"a bundle needs {', '.join(missing)}")
    contents: dict[str, bytes] = {}
    for name in sorted(files):
        _check_member_name(name)
        value = files[name]
        if isinstance(value, bytes):
            contents[name] = value
        elif isinstance(value, str):
            contents[name] = value.encode("utf-8")
        else:
            contents[name] = Path(value).read_bytes()
    manifest = Manifest(
        files={n: {"sha256": sha256_bytes(b), "size": len(b)} for n, b in contents.items()},
        info={"created_at": datetime.now(UTC).isoformat(timespec="seconds"), **(info or {})},
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in [(MANIFEST, manifest.to_json().encode("utf-8")), *contents.items()]:
            member = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = _ZIP_MODE
            archive.writestr(member, data)
    sealed = _seal(buffer.getvalue())
    if isinstance(out, str | Path):
        out = Path(out)
        part = out.with_name(out.name + ".part")
        part.write_bytes(sealed)
        part.replace(out)
    else:
        out.write(sealed)
    return manifest


def _seal(data: bytes) -> bytes:
    """Append the seal as the archive comment of a zip written without one."""
    head, eocd = data[: -_EOCD.size], data[-_EOCD.size :]
    fields = list(_EOCD.unpack(eocd))
    if fields[0] != _EOCD_SIGNATURE or fields[-1] != 0:
        raise RuntimeError("unexpected zip layout while sealing")
    seal = SEAL_PREFIX + sha256_bytes(head).encode("ascii")
    fields[-1] = len(seal)
    return head + _EOCD.pack(*fields) + seal


def _check_seal(data: bytes, archive: zipfile.ZipFile) -> None:
    tail = _EOCD.size + SEAL_LENGTH
    if len(data) < tail:
        raise BundleError("the file is too short to be a bundle (truncated?)")
    head, eocd, seal = data[:-tail], data[-tail:-SEAL_LENGTH], data[-SEAL_LENGTH:]
    signature, disk, cd_disk, n_here, n_total, cd_size, cd_offset, comment_len = _EOCD.unpack(eocd)
    n_members = len(archive.infolist())
    if (
        signature != _EOCD_SIGNATURE
        or (disk, cd_disk) != (0, 0)
        or n_here != n_members
        or n_total != n_members
        or comment_len != SEAL_LENGTH
        or cd_offset + cd_size != len(head)
        or not seal.startswith(SEAL_PREFIX)
    ):
        raise BundleError(
            "the bundle's end record or seal was changed: the file is damaged or was tampered "
            "with after export"
        )
    if sha256_bytes(head) != seal[len(SEAL_PREFIX) :].decode("ascii", "replace"):
        raise BundleError(
            "the bundle's SHA-256 does not match its seal: the file is damaged or was tampered "
            "with after export"
        )


def _check_files(manifest: Manifest, contents: Mapping[str, bytes]) -> None:
    listed, present = set(manifest.files), set(contents)
    unlisted, missing = sorted(present - listed), sorted(listed - present)
    if unlisted:
        raise BundleError(f"files not listed in the manifest: {', '.join(unlisted)}")
    if missing:
        raise BundleError(f"files missing from the bundle: {', '.join(missing)}")
    for name in sorted(listed):
        expected = manifest.files[name]["sha256"]
        actual = sha256_bytes(contents[name])
        if actual != expected:
            raise BundleError(
                f"{name}: SHA-256 mismatch (manifest {expected[:16]}..., file {actual[:16]}...): "
                "the file was changed after export"
            )
    missing = [name for name in REQUIRED_FILES if name not in present]
    if missing:
        raise BundleError(f"the bundle lacks required files: {', '.join(missing)}")


def read_bundle(path: Path | str) -> tuple[Manifest, dict[str, bytes]]:
    """Read and verify a bundle; refuse it (:class:`BundleError`) on any sign of change.

    Returns
    -------
    manifest : Manifest
    contents : dict of str to bytes
        Every member, the manifest's own bytes included.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read bundle {path}: {exc.strerror or exc}") from exc
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [member.filename for member in archive.infolist()]
        if len(set(names)) != len(names):
            raise BundleError("the bundle holds the same file twice")
        if MANIFEST not in names:
            raise BundleError(f"no {MANIFEST} in the archive: not a model bundle")
        members = {name: archive.read(name) for name in names}
    except BundleError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise BundleError(
            f"{path.name} is not a readable zip archive ({exc}): the file is damaged or was "
            "tampered with"
        ) from exc
    except Exception as exc:  # zlib and struct errors from damaged data
        raise BundleError(
            f"{path.name} could not be unpacked ({type(exc).__name__}: {exc}): the file is "
            "damaged or was tampered with"
        ) from exc
    manifest = Manifest.from_json(members[MANIFEST])
    _check_files(manifest, {name: b for name, b in members.items() if name != MANIFEST})
    _check_seal(data, archive)
    return manifest, members


def verify_bundle(path: Path | str) -> Manifest:
    """Check a bundle without keeping its contents; raises :class:`BundleError`."""
    manifest, _ = read_bundle(path)
    return manifest


def extract_bundle(path: Path | str, out_dir: Path | str) -> Manifest:
    """Verify a bundle, then unpack it into ``out_dir`` (created if needed)."""
    manifest, contents = read_bundle(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (out_dir / name).write_bytes(data)
    return manifest


def verify_dir(folder: Path | str) -> Manifest:
    """Check an unpacked bundle folder against its manifest; raises :class:`BundleError`."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"no {MANIFEST} in {folder}")
    manifest = Manifest.from_json(manifest_path.read_bytes())
    contents = {
        p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != MANIFEST
    }
    _check_files(manifest, contents)
    return manifest
