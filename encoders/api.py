"""The facade the app and the benchmarks call: dataset folder in, checkpoint / embeddings out.

A dataset folder holds ``cases.parquet|csv`` (``case_id``, ``entity_id``, optional ``ts``),
``events.parquet|csv`` (``entity_id``, ``ts``, fields) and optional ``schema.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from encoders import checkpoint
from encoders import threads as torch_threads
from encoders.embed import chunk_keys, chunk_plan, embed_cases, read_done
from encoders.featurize import Featurizer, _ts_ns, case_positions, with_case_events
from encoders.model import AutoRiskConfig, AutoRiskEncoder
from encoders.pretrain import PretrainConfig, pretrain

Progress = Callable[[int, int, dict], None]
EMBED_CHUNK_EVENTS = 200_000
READ_AT = "own-event"  # where a case reads its sequence (part of an embedding job's fingerprint)


def read_table(data_dir: Path, name: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """``name``.parquet or ``name``.csv from ``data_dir``; None if neither exists."""
    data_dir = Path(data_dir)
    parquet, csv = data_dir / f"{name}.parquet", data_dir / f"{name}.csv"
    if parquet.exists():
        return pd.read_parquet(parquet, columns=columns)
    if csv.exists():
        frame = pd.read_csv(csv, usecols=columns)
        if "ts" in frame.columns and not pd.api.types.is_numeric_dtype(frame["ts"]):
            frame["ts"] = pd.to_datetime(frame["ts"])
        return frame
    return None


def read_schema(data_dir: Path) -> dict:
    path = Path(data_dir) / "schema.json"
    return json.loads(path.read_text()) if path.exists() else {}


def read_events(data_dir: Path) -> pd.DataFrame:
    events = read_table(data_dir, "events")
    if events is None or events.empty:
        raise ValueError(f"{data_dir} has no events table: nothing to encode")
    return events


def read_case_keys(data_dir: Path, fields: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """``entity_id`` and, where present, ``ts`` and the columns ``fields`` of every case, in
    file order."""
    data_dir = Path(data_dir)
    parquet = data_dir / "cases.parquet"
    if parquet.exists():
        import pyarrow.parquet as pq

        names = pq.read_schema(parquet).names
    else:
        names = pd.read_csv(data_dir / "cases.csv", nrows=0).columns.tolist()
    wanted = ("entity_id", "ts", *(f for f in fields if f not in {"entity_id", "ts"}))
    columns = [c for c in wanted if c in names]
    return read_table(data_dir, "cases", columns=columns)


def read_sequence_events(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events to encode (with every case's own event, :func:`with_case_events`) and the
    cases' keys, in file order."""
    events = read_events(data_dir)
    cases = read_case_keys(data_dir, fields=list(events.columns))
    events = with_case_events(events, cases)
    return events, cases[[c for c in ("entity_id", "ts") if c in cases.columns]]


def dataset_fingerprint(data_dir: Path) -> str:
    """Short hash of the dataset files' names, sizes and modification times."""
    parts = []
    for path in sorted(Path(data_dir).glob("*")):
        if path.name.split(".")[0] in {"cases", "events", "schema"} and path.is_file():
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def build_model(featurizer: Featurizer, **overrides) -> AutoRiskEncoder:
    config = AutoRiskConfig(
        cat_cardinalities=featurizer.cat_cardinalities,
        n_numeric=len(featurizer.numeric),
        num_buckets=featurizer.num_buckets,
        n_text=len(featurizer.text),
        text_buckets=featurizer.text_buckets,
        **{"num_regression": True, **overrides},
    )
    return AutoRiskEncoder(config)


def pretrain_for_dataset(
    data_dir: Path,
    out_path: Path,
    *,
    minutes: float = 5.0,
    progress: Progress | None = None,
    seed: int = 0,
    model_overrides: dict | None = None,
    pretrain_config: PretrainConfig | None = None,
    threads: int | None = None,
) -> Path:
    """Fit the featurizer, pretrain an encoder for at most ``minutes``, save the checkpoint.

    ``threads``: torch CPU threads (default ``$ENCODERS_THREADS`` or 1, see ``encoders.threads``).
    """
    torch_threads.configure(threads)
    torch.manual_seed(seed)
    events, _ = read_sequence_events(data_dir)
    featurizer = Featurizer().fit(events, read_schema(data_dir))
    seqs = featurizer.sequences(events)
    del events
    model = build_model(featurizer, **(model_overrides or {}))
    config = pretrain_config or PretrainConfig(minutes=minutes, seed=seed)
    history = pretrain(model, seqs, config, progress=progress)
    history["data_fingerprint"] = dataset_fingerprint(data_dir)
    return checkpoint.save(Path(out_path), model, featurizer, history)


def random_checkpoint_for_dataset(
    data_dir: Path, out_path: Path, *, seed: int = 0, model_overrides: dict | None = None
) -> Path:
    """A randomly initialized encoder with the dataset's featurizer (the quality baseline)."""
    torch.manual_seed(seed)
    events, _ = read_sequence_events(data_dir)
    featurizer = Featurizer().fit(events, read_schema(data_dir))
    model = build_model(featurizer, **(model_overrides or {}))
    return checkpoint.save(Path(out_path), model.eval(), featurizer, {"random_init": True})


class ChunkedEmbedding:
    """One process's handle on a chunked embedding job: ``data_dir``'s cases into ``out_path``.

    The job is split into units (:func:`encoders.embed.chunk_keys`): the cases without history,
    then chunks of entities of about ``EMBED_CHUNK_EVENTS`` events. Each unit writes only its own
    cases' rows of the shared ``.npy`` memmap and is recorded in ``<out_path>.progress.json`` when
    finished, so any number of processes (on one host, or sharing the folder) can work on one job:
    one calls :meth:`prepare`, then each calls :meth:`run` with a ``claim`` that hands every unit
    to one of them. Constructing the handle loads the checkpoint and featurizes every event.
    """

    def __init__(
        self,
        checkpoint_path: Path,
        data_dir: Path,
        out_path: Path,
        *,
        chunk_events: int | None = None,
    ):
        self.chunk_events = int(chunk_events or EMBED_CHUNK_EVENTS)
        self.out_path = Path(out_path)
        self.progress_path = Path(str(out_path) + ".progress.json")
        self.model, featurizer = checkpoint.load(checkpoint_path)
        events, cases = read_sequence_events(data_dir)
        self.n_cases, self.dim = len(cases), self.model.config.embedding_dim
        # The chunk size is part of it: chunk numbers mean other entities under another size.
        self.fingerprint = (
            f"{dataset_fingerprint(data_dir)}:{_file_id(checkpoint_path)}:{self.chunk_events}"
            f":{READ_AT}"
        )
        self.seqs = featurizer.sequences(events)
        del events
        ts = _ts_ns(cases["ts"]) if "ts" in cases.columns else None
        self.entity_index, self.position, self.case_gap = case_positions(
            self.seqs, cases["entity_id"].to_numpy(), ts
        )
        self.keys = chunk_keys(len(chunk_plan(self.seqs, self.chunk_events)))

    def done_keys(self) -> set[str]:
        return read_done(self.progress_path, self.fingerprint, self.n_cases) & set(self.keys)

    def is_complete(self) -> bool:
        return self.out_path.exists() and len(self.done_keys()) == len(self.keys)

    def prepare(self, *, resume: bool = True) -> bool:
        """Create the memmap unless a resumable one of the right shape exists; True if complete."""
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        reusable = resume and self.out_path.exists() and self.progress_path.exists()
        if reusable and self.is_complete():
            return True
        if reusable:
            out = np.load(self.out_path, mmap_mode="r")
            reusable = out.shape == (self.n_cases, self.dim) and out.dtype == np.float32
            del out
        if not reusable:
            self.progress_path.unlink(missing_ok=True)
            out = np.lib.format.open_memmap(
                self.out_path, mode="w+", dtype=np.float32, shape=(self.n_cases, self.dim)
            )
            out.flush()
            del out
        return False

    def run(
        self,
        *,
        claim: Callable[[str], bool] | None = None,
        progress: Progress | None = None,
    ) -> list[str]:
        """Embed the units not yet done that ``claim`` grants (all without it); returns them."""
        before = self.done_keys()
        granted: list[str] = []

        def claim_and_note(key: str) -> bool:
            if claim is None or claim(key):
                granted.append(key)
                return True
            return False

        out = np.load(self.out_path, mmap_mode="r+")
        embed_cases(
            self.model,
            self.seqs,
            self.entity_index,
            self.position,
            self.case_gap,
            out,
            progress_path=self.progress_path,
            fingerprint=self.fingerprint,
            chunk_events=self.chunk_events,
            progress=progress,
            claim=claim_and_note,
        )
        out.flush()
        del out
        return [key for key in granted if key not in before]

    def result(self) -> np.ndarray:
        """(n_cases, embedding_dim) float32 read-only memmap."""
        return np.load(self.out_path, mmap_mode="r")


def embed_dataset(
    checkpoint_path: Path,
    data_dir: Path,
    out_path: Path,
    *,
    progress: Progress | None = None,
    resume: bool = True,
    threads: int | None = None,
) -> np.ndarray:
    """Embed every case of ``data_dir`` into a float32 ``.npy`` memmap, one row per case.

    Rows follow the ``cases`` file order. The work is chunked by entity; finished chunks are
    recorded in ``<out_path>.progress.json`` so an interrupted run resumes where it stopped
    (:class:`ChunkedEmbedding` shares the chunks between processes).

    Returns
    -------
    (n_cases, embedding_dim) float32 read-only memmap.
    """
    torch_threads.configure(threads)
    job = ChunkedEmbedding(checkpoint_path, data_dir, out_path)
    if not job.prepare(resume=resume):
        job.run(progress=progress)
    return job.result()


def embeddings_for_dataset(
    data_dir: Path,
    *,
    cache_dir: Path,
    minutes: float = 5.0,
    progress: Progress | None = None,
) -> np.ndarray:
    """Embeddings of ``data_dir``'s cases, pretraining and embedding only what is not cached.

    The cache is keyed by the dataset files' fingerprint: ``encoder-<key>.pt`` and
    ``embeddings-<key>.npy`` in ``cache_dir``.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = dataset_fingerprint(data_dir)
    ckpt = cache_dir / f"encoder-{key}.pt"
    if not ckpt.exists():
        pretrain_for_dataset(data_dir, ckpt, minutes=minutes, progress=progress)
    return embed_dataset(ckpt, data_dir, cache_dir / f"embeddings-{key}.npy", progress=progress)


def embedding_map_png(
    embeddings: np.ndarray,
    out_path: Path,
    *,
    colors: np.ndarray | None = None,
    labels: dict | list | None = None,
    sample: int = 20000,
    seed: int = 0,
) -> Path:
    """2-D UMAP of a sample of ``embeddings`` (n, d), saved as a PNG.

    ``colors`` (n,) are category codes (e.g. 0 unlabeled, 1 seed, 2 confirmed) or scores;
    ``labels`` names the categories (a list indexed by code or a dict code -> name).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import umap

    rng = np.random.default_rng(seed)
    n = len(embeddings)
    rows = np.sort(rng.choice(n, size=min(n, sample), replace=False))
    points = np.asarray(embeddings[rows], dtype=np.float32)
    xy = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed).fit_transform(points)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    if colors is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=2, c="#4c72b0", alpha=0.5, linewidths=0)
    else:
        c = np.asarray(colors)[rows]
        if labels is not None:
            names = labels if isinstance(labels, dict) else dict(enumerate(labels))
            for code in np.unique(c):
                sel = c == code
                # rare classes (positives) drawn last and larger so they stay visible
                size = 2 if sel.mean() > 0.2 else 8
                ax.scatter(
                    xy[sel, 0],
                    xy[sel, 1],
                    s=size,
                    alpha=0.7,
                    linewidths=0,
                    label=f"{names.get(code, code)} ({int(sel.sum())})",
                )
            ax.legend(loc="best", markerscale=3, fontsize=8)
        else:
            sc = ax.scatter(xy[:, 0], xy[:, 1], s=2, c=c, cmap="viridis", alpha=0.6, linewidths=0)
            fig.colorbar(sc, ax=ax)
    ax.set_title(f"Auto Risk embeddings, UMAP of {len(rows):,} cases")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def _file_id(path: Path) -> str:
    stat = Path(path).stat()
    return f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}"
