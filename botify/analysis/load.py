"""Read a listen log and normalise it for one experiment.

Accepted inputs: our Parquet export (``botify.export``, ``experiments`` as a JSON string) and
JSON lines in the original botify log shape (which our JSONL export also writes). The result
has the columns ``message, timestamp, user, time, latency, arm``: ``latency`` stays in
seconds, and rows that carry no arm for the experiment are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from botify.errors import BotifyError

COLUMNS = ("message", "timestamp", "user", "time", "latency")
DTYPES: dict[str, pl.DataType] = {
    "message": pl.String(),
    "timestamp": pl.Int64(),
    "user": pl.Int64(),
    "time": pl.Float64(),
    "latency": pl.Float64(),
}
PARQUET_MAGIC = b"PAR1"


class AnalysisInputError(BotifyError):
    """The log cannot be analysed: missing, unreadable, or without the requested experiment."""

    code = "analysis_input"


@dataclass(frozen=True)
class ArmLog:
    """A log normalised for one experiment: one row per request that carries an arm."""

    frame: pl.DataFrame
    experiment: str
    source: str  # "parquet" or "jsonl"
    excluded_rows: int


def load_log(path: Path, experiment: str) -> ArmLog:
    """Read ``path`` (Parquet or JSON lines) and keep the rows labelled for ``experiment``."""
    if not path.is_file():
        raise AnalysisInputError(f"{path}: no such file")
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise AnalysisInputError(f"{path}: the file is empty")
    source = "parquet" if head == PARQUET_MAGIC else "jsonl"
    try:
        raw = _read_parquet(path) if source == "parquet" else _read_jsonl(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisInputError(f"{path}: not a readable {source} listen log ({first})") from None
    frame, excluded = normalize(raw, experiment, str(path))
    return ArmLog(frame=frame, experiment=experiment, source=source, excluded_rows=excluded)


def normalize(raw: pl.DataFrame, experiment: str, where: str = "log") -> tuple[pl.DataFrame, int]:
    """Pure step: the arm of ``experiment`` per row, typed columns, unlabelled rows dropped."""
    missing = [c for c in (*COLUMNS, "experiments") if c not in raw.columns]
    if missing:
        raise AnalysisInputError(f"{where}: missing column(s) {', '.join(missing)}")
    known = experiment_names(raw)
    if experiment not in known:
        names = ", ".join(sorted(known)) or "none"
        raise AnalysisInputError(f"{where}: no experiment {experiment!r} (found: {names})")
    try:
        frame = raw.select(
            *(pl.col(c).cast(DTYPES[c]) for c in COLUMNS),
            arm=pl.col("experiments").struct.field(experiment).cast(pl.String),
        )
    except pl.exceptions.PolarsError as exc:
        raise AnalysisInputError(f"{where}: unexpected column types ({exc})") from None
    labelled = frame.filter(pl.col("arm").is_not_null())
    return labelled, frame.height - labelled.height


def experiment_names(raw: pl.DataFrame) -> list[str]:
    dtype = raw.schema["experiments"]
    return [f.name for f in dtype.fields] if isinstance(dtype, pl.Struct) else []


def _read_jsonl(path: Path) -> pl.DataFrame:
    # The schema must come from every line: a struct inferred from the first lines alone
    # silently drops experiment names that appear later.
    lf = pl.scan_ndjson(path, infer_schema_length=None)
    present = lf.collect_schema().names()
    return lf.select(c for c in (*COLUMNS, "experiments") if c in present).collect()


def _read_parquet(path: Path) -> pl.DataFrame:
    lf = pl.scan_parquet(path)
    present = lf.collect_schema().names()
    raw = lf.select(c for c in (*COLUMNS, "experiments") if c in present).collect()
    if "experiments" in raw.columns and raw.schema["experiments"] == pl.String:
        decoded = raw["experiments"].str.json_decode(infer_schema_length=None)
        raw = raw.with_columns(decoded)
    return raw
