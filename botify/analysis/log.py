"""Reading logs: our Parquet export, our JSON-lines export or the original botify log."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from botify.errors import InvalidRequestError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def load_log(path: Path | str, experiment: str) -> tuple[pl.DataFrame, int]:
    """Rows (message, timestamp, user, time, latency, arm, seq) of one experiment, and the
    number of rows that carried no arm for it. ``seq`` breaks timestamp ties in log order."""
    path = Path(path)
    if not _NAME.match(experiment):
        raise InvalidRequestError(f"invalid experiment name {experiment!r}")
    if not path.is_file():
        raise InvalidRequestError(f"no such log file: {path}")
    try:
        if path.suffix == ".parquet":
            raw = pl.read_parquet(path)
            # Within a user, partition offsets are the true order (timestamps are in ms).
            raw = raw.sort(["timestamp", "partition", "offset"]) if "offset" in raw.columns else raw
            arm = pl.col("experiments").str.json_path_match(f"$.{experiment}")
        else:
            raw = pl.read_ndjson(path, infer_schema_length=None)
            if "experiments" not in raw.columns:
                raise InvalidRequestError(f"{path}: rows have no 'experiments'")
            fields = {f.name for f in raw.schema["experiments"].fields}  # type: ignore[union-attr]
            if experiment not in fields:
                known = ", ".join(sorted(fields))
                raise InvalidRequestError(
                    f"experiment {experiment!r} is not in {path}; it has: {known}"
                )
            arm = pl.col("experiments").struct.field(experiment)
    except (pl.exceptions.ComputeError, OSError, pl.exceptions.SchemaError) as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc}") from None
    missing = {"message", "timestamp", "user", "time", "latency"} - set(raw.columns)
    if missing:
        raise InvalidRequestError(f"{path}: missing columns {sorted(missing)}")
    rows = raw.select(
        pl.col("message").cast(pl.Utf8),
        pl.col("timestamp").cast(pl.Int64),
        pl.col("user").cast(pl.Int64),
        pl.col("time").cast(pl.Float64),
        pl.col("latency").cast(pl.Float64),
        arm.cast(pl.Utf8).alias("arm"),
    ).with_row_index("seq")
    without = rows.filter(pl.col("arm").is_null()).height
    return rows.filter(pl.col("arm").is_not_null()), without
