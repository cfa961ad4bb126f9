"""Read a listen log and normalise it for one experiment.

Accepted inputs: our Parquet export (``botify.export``, ``experiments`` as a JSON string) and
JSON lines in the original botify log shape (which our JSONL export also writes). The result
has the columns ``message, timestamp, user, time, latency, arm``: ``latency`` stays in
seconds, and rows that carry no arm for the experiment are left out and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

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
T = TypeVar("T")


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
    reader = _read_parquet if source == "parquet" else _read_jsonl
    raw = _guarded(path, source, lambda: reader(path, experiment))
    frame, excluded = normalize(raw, experiment, str(path))
    if frame.is_empty():
        names = _guarded(path, source, lambda: _experiment_names(path, source))
        found = ", ".join(sorted(names)) or "none"
        raise AnalysisInputError(f"{path}: no experiment {experiment!r} (found: {found})")
    return ArmLog(frame=frame, experiment=experiment, source=source, excluded_rows=excluded)


def normalize(raw: pl.DataFrame, experiment: str, where: str = "log") -> tuple[pl.DataFrame, int]:
    """Pure step: the arm of ``experiment`` per row, typed columns, unlabelled rows dropped.

    ``raw`` has the columns of ``COLUMNS`` and ``experiments``, a struct of arm names.
    """
    missing = [c for c in (*COLUMNS, "experiments") if c not in raw.columns]
    if missing:
        raise AnalysisInputError(f"{where}: missing column(s) {', '.join(missing)}")
    dtype = raw.schema["experiments"]
    names = [f.name for f in dtype.fields] if isinstance(dtype, pl.Struct) else []
    if experiment not in names:
        found = ", ".join(sorted(names)) or "none"
        raise AnalysisInputError(f"{where}: no experiment {experiment!r} (found: {found})")
    try:
        frame = raw.select(
            *(pl.col(c).cast(DTYPES[c]) for c in COLUMNS),
            arm=pl.col("experiments").struct.field(experiment).cast(pl.String),
        )
    except pl.exceptions.PolarsError as exc:
        raise AnalysisInputError(f"{where}: unexpected column types ({_first_line(exc)})") from None
    labelled = frame.filter(pl.col("arm").is_not_null())
    for column in COLUMNS:
        nulls = labelled[column].null_count()
        if nulls:
            raise AnalysisInputError(f"{where}: {nulls} rows have no {column}")
    return labelled, frame.height - labelled.height


def _guarded(path: Path, source: str, read: Callable[[], T]) -> T:
    try:
        return read()
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise AnalysisInputError(
            f"{path}: not a readable {source} listen log ({_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_jsonl(path: Path, experiment: str) -> pl.DataFrame:
    # One pass with a fixed schema: only this experiment's arm is parsed out of the struct.
    schema = {**DTYPES, "experiments": pl.Struct({experiment: pl.String()})}
    return pl.read_ndjson(path, schema=schema)


def _read_parquet(path: Path, experiment: str) -> pl.DataFrame:
    lf = pl.scan_parquet(path)
    present = lf.collect_schema()
    missing = [c for c in (*COLUMNS, "experiments") if c not in present]
    if missing:
        raise AnalysisInputError(f"{path}: missing column(s) {', '.join(missing)}")
    raw = lf.select(*COLUMNS, "experiments").collect()
    if present["experiments"] == pl.String:  # our export: a JSON object per row
        arms = pl.col("experiments").str.json_decode(pl.Struct({experiment: pl.String()}))
        raw = raw.with_columns(arms)
    return raw


def _experiment_names(path: Path, source: str) -> list[str]:
    """Every experiment named anywhere in the log (a slower full pass, for error messages)."""
    if source == "parquet":
        column = pl.read_parquet(path, columns=["experiments"])["experiments"]
        if column.dtype == pl.String:
            column = column.str.json_decode(infer_schema_length=None)
        dtype = column.dtype
    else:
        lf = pl.scan_ndjson(path, infer_schema_length=None)
        dtype = lf.collect_schema().get("experiments", pl.Null())
    return [f.name for f in dtype.fields] if isinstance(dtype, pl.Struct) else []
