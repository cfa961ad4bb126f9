"""Training examples: what the stream derives from listens for the trainer to learn from.

An example says: in a session that started with ``session_start``, right after ``context``
the user listened to ``track`` for the fraction ``time``. ``botify.state.apply_listen`` makes
them; the stream publishes them on the examples topic as msgpack maps (validated against
``botify/schemas/training_example.v1.json``); ``botify.example_log`` keeps them on disk. The source
listen record's ``(partition, offset)`` and the listen's timestamp identify an example: a
replay after a crash republishes it, and readers drop the duplicate by that key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgpack
import msgspec

from botify.errors import InvalidEventError
from botify.events import MAX_ID

if TYPE_CHECKING:
    import polars as pl

TRAINING_EXAMPLE_SCHEMA = "training_example.v1.json"
SCHEMA_VERSION = 1
MAX_INT64 = 2**63 - 1
MAX_INT32 = 2**31 - 1
MAX_RECOMMENDER = 100
# msgspec writes the same MessagePack bytes as msgpack.packb for an example's map (the
# encoder's property test holds them equal), at a fraction of the cost: the stream encodes
# one per listen.
_encode = msgspec.msgpack.Encoder().encode

# Column name -> polars dtype name, in frame order. Names, not polars types: polars is
# imported only where a frame is built, not by every process that folds listens.
EXAMPLE_COLUMNS: dict[str, str] = {
    "timestamp": "Int64",
    "user": "Int64",
    "session_start": "Int64",
    "context": "Int64",
    "track": "Int64",
    "time": "Float32",
    "partition": "Int32",
    "offset": "Int64",
    "recommender": "String",
}

# Inclusive bounds of each integer field, as the schema states them.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "timestamp": (0, MAX_INT64),
    "user": (0, MAX_ID),
    "session_start": (0, MAX_ID),
    "context": (0, MAX_ID),
    "track": (0, MAX_ID),
    "partition": (0, MAX_INT32),
    "offset": (0, MAX_INT64),
}
_FIELDS = frozenset(EXAMPLE_COLUMNS) | {"schema_version"}


class TrainingExample(
    msgspec.Struct, frozen=True, gc=False, tag_field="schema_version", tag=SCHEMA_VERSION
):
    """A frozen msgspec Struct (the stream makes one per listen: see ``botify.state``).
    Tagged: msgspec writes it as the record's map, ``schema_version`` first, then the fields
    in order (``encode_example``)."""

    timestamp: int  # ms, the listen event's
    user: int
    session_start: int  # the session's first track
    context: int  # the track listened just before ``track`` in this session
    track: int
    time: float  # fraction of ``track`` listened, 0..1
    partition: int  # the source listen record (with the timestamp, the dedupe key)
    offset: int
    # The recommender that chose ``track``: a model is judged on listens it did not pick.
    recommender: str = ""

    @property
    def key(self) -> tuple[int, int, int]:
        """The source record's (partition, offset) and the listen's timestamp: equal keys
        are the same example. The timestamp tells two lifetimes of the topic apart: a broker
        that lost its data (the embedded one keeps it in memory) numbers offsets from 0
        again, and the new listens must not pass for republished old ones."""
        return self.partition, self.offset, self.timestamp


def encode_example(example: TrainingExample) -> bytes:
    """The msgpack record value; ``InvalidEventError`` if a field is out of its range."""
    e = example
    # The common case, checked in one expression; anything else gets the full check, which
    # accepts what the schema does (an int subclass, an integer time) or says what is wrong.
    if not (
        type(e.timestamp) is int
        and type(e.user) is int
        and type(e.session_start) is int
        and type(e.context) is int
        and type(e.track) is int
        and type(e.partition) is int
        and type(e.offset) is int
        and type(e.time) is float
        and type(e.recommender) is str
        and 0 <= e.timestamp <= MAX_INT64
        and 0 <= e.user <= MAX_ID
        and 0 <= e.session_start <= MAX_ID
        and 0 <= e.context <= MAX_ID
        and 0 <= e.track <= MAX_ID
        and 0 <= e.partition <= MAX_INT32
        and 0 <= e.offset <= MAX_INT64
        and 0.0 <= e.time <= 1.0
        and len(e.recommender) <= MAX_RECOMMENDER
    ):
        fields = {"schema_version": SCHEMA_VERSION} | {
            name: getattr(e, name) for name in EXAMPLE_COLUMNS
        }
        _check(fields)
        return _encode(fields)
    # The Struct itself, tagged: the same map, written in C without building a dict (the
    # encoder's property test holds the bytes equal to msgpack.packb of the map).
    return _encode(e)


def decode_example(raw: bytes | None) -> TrainingExample:
    """Decode and validate one record value; ``InvalidEventError`` says what is wrong."""
    if raw is None:
        raise InvalidEventError("record has no value")
    try:
        fields = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise InvalidEventError(f"not msgpack: {type(exc).__name__} {exc}".rstrip()) from None
    if not isinstance(fields, dict):
        raise InvalidEventError(f"record: expected a map, got {type(fields).__name__}")
    _check(fields)
    # The schema's "number" admits integers (a msgpack 1 for 1.0); the field is a float.
    return TrainingExample(
        **{name: fields[name] for name in EXAMPLE_COLUMNS} | {"time": float(fields["time"])}
    )


def examples_frame(examples: Iterable[TrainingExample]) -> pl.DataFrame:
    """The examples as a frame with ``EXAMPLE_COLUMNS``: what the trainer's models consume."""
    import polars as pl

    rows = list(examples)
    columns = {name: [getattr(e, name) for e in rows] for name in EXAMPLE_COLUMNS}
    return pl.DataFrame(columns, schema=example_schema())


def example_schema() -> pl.Schema:
    """``EXAMPLE_COLUMNS`` as a polars schema."""
    import polars as pl

    return pl.Schema({name: getattr(pl, dtype) for name, dtype in EXAMPLE_COLUMNS.items()})


def _check(fields: Mapping[str, Any]) -> None:
    """Raise ``InvalidEventError`` unless ``fields`` is what the JSON schema accepts."""
    if fields.keys() != _FIELDS:  # the names are listed only when wrong (this runs per listen)
        missing = sorted(_FIELDS - fields.keys())
        extra = sorted(str(k) for k in fields.keys() - _FIELDS)
        raise InvalidEventError(f"record: missing fields {missing}, unexpected fields {extra}")
    if fields["schema_version"] != SCHEMA_VERSION:
        raise InvalidEventError(f"schema_version: expected {SCHEMA_VERSION}")
    for name, (low, high) in _INT_RANGES.items():
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidEventError(f"{name}: expected an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise InvalidEventError(f"{name}: {value} is outside [{low}, {high}]")
    recommender = fields["recommender"]
    if not isinstance(recommender, str) or len(recommender) > MAX_RECOMMENDER:
        raise InvalidEventError(f"recommender: expected a string of at most {MAX_RECOMMENDER}")
    time = fields["time"]
    if isinstance(time, bool) or not isinstance(time, int | float):
        raise InvalidEventError(f"time: expected a number, got {type(time).__name__}")
    if not (math.isfinite(time) and 0.0 <= time <= 1.0):
        raise InvalidEventError(f"time: {time} is outside [0, 1]")
