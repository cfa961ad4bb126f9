"""Read a listen log and normalise it for one experiment.

Accepted inputs: our Parquet export (``botify.listen_export``, ``experiments`` as a JSON string) and
JSON lines in the original botify log shape (which our JSONL export also writes). The result
has the columns ``message, timestamp, user, time, latency, arm``: ``latency`` stays in
seconds, and rows that carry no arm for the experiment are left out and counted. A bad row
(not JSON, a value missing, of the wrong type or outside the event schema's bounds, such as a
timestamp past ``MAX_TIMESTAMP_MS``) is skipped and counted too: one never aborts an analysis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson
import polars as pl

from botify.errors import BotifyError
from botify.events import MAX_ID, MAX_LATENCY_S, MAX_TIMESTAMP_MS

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
# A row the analysis can use: every column present and within the event schema's bounds.
VALID_ROW = (
    pl.col("message").is_in(["next", "last"])
    & pl.col("timestamp").is_between(0, MAX_TIMESTAMP_MS)
    & pl.col("user").is_between(0, MAX_ID)
    & pl.col("time").is_between(0.0, 1.0)
    & pl.col("latency").is_between(0.0, MAX_LATENCY_S)
).fill_null(False)


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
    # Skipped as unreadable: not JSON, a value missing, mistyped or out of the schema's bounds.
    bad_rows: int = 0


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
    raw, unparsed = _guarded(path, source, lambda: reader(path, experiment))
    frame, excluded, bad = normalize(raw, experiment, str(path))
    if frame.is_empty():
        names = _guarded(path, source, lambda: _experiment_names(path, source))
        found = ", ".join(sorted(names)) or "none"
        raise AnalysisInputError(f"{path}: no experiment {experiment!r} (found: {found})")
    return ArmLog(frame, experiment, source, excluded, bad + unparsed)


def normalize(
    raw: pl.DataFrame, experiment: str, where: str = "log"
) -> tuple[pl.DataFrame, int, int]:
    """Pure step: the arm of ``experiment`` per row, typed columns, unlabelled rows dropped.
    Returns the rows kept, the unlabelled rows and the bad rows (left out, counted).

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
    valid = frame.filter(VALID_ROW)
    labelled = valid.filter(pl.col("arm").is_not_null())
    return labelled, valid.height - labelled.height, frame.height - valid.height


def _guarded(path: Path, source: str, read: Callable[[], T]) -> T:
    try:
        return read()
    except (pl.exceptions.PolarsError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise AnalysisInputError(
            f"{path}: not a readable {source} listen log ({_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_jsonl(path: Path, experiment: str) -> tuple[pl.DataFrame, int]:
    """The rows, and how many lines could not be read as one."""
    # One pass with a fixed schema: only this experiment's arm is parsed out of the struct.
    schema = {**DTYPES, "experiments": pl.Struct({experiment: pl.String()})}
    try:
        return pl.read_ndjson(path, schema=schema), 0
    except pl.exceptions.PolarsError:
        return _read_jsonl_line_by_line(path, schema)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "message": (str,),
    "timestamp": (int,),
    "user": (int,),
    "time": (int, float),
    "latency": (int, float),
}
_INT64 = (-(2**63), 2**63 - 1)


def _read_jsonl_line_by_line(
    path: Path, schema: dict[str, pl.DataType]
) -> tuple[pl.DataFrame, int]:
    """The slow path, taken only when the fast reader refused the file: each line parsed on
    its own; one that is not an object of the expected types is counted, not fatal."""
    experiment = next(iter(schema["experiments"].to_schema()))  # type: ignore[attr-defined]
    columns: dict[str, list[object]] = {name: [] for name in schema}
    bad = 0
    with path.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(row, dict) or not _typed(row):
                bad += 1
                continue
            arms = row.get("experiments")
            arm = arms.get(experiment) if isinstance(arms, dict) else None
            for name in _JSON_TYPES:
                columns[name].append(row[name])
            columns["experiments"].append({experiment: arm if isinstance(arm, str) else None})
    return pl.DataFrame(columns, schema=schema), bad


def _typed(row: dict[str, object]) -> bool:
    for name, types in _JSON_TYPES.items():
        value = row.get(name)
        if isinstance(value, bool) or not isinstance(value, types):
            return False
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            return False
    return True


def _read_parquet(path: Path, experiment: str) -> tuple[pl.DataFrame, int]:
    lf = pl.scan_parquet(path)
    present = lf.collect_schema()
    missing = [c for c in (*COLUMNS, "experiments") if c not in present]
    if missing:
        raise AnalysisInputError(f"{path}: missing column(s) {', '.join(missing)}")
    raw = lf.select(*COLUMNS, "experiments").collect()
    if present["experiments"] == pl.String:  # our export: a JSON object per row
        arms = pl.col("experiments").str.json_decode(pl.Struct({experiment: pl.String()}))
        raw = raw.with_columns(arms)
    return raw, 0


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
