"""Record types that travel on Kafka topics, and their codecs.

``botify/schemas/`` holds the JSON Schema for each record type; these pydantic models are the
only codecs and mirror the schema's constraints, so an invalid record is refused at the producer
(``InvalidEventError``) and recognised at the consumer. ``tests/unit/test_events.py`` checks
both sides against the schema files.
"""

from __future__ import annotations

import math
import os
import re
from typing import Annotated, Any, Literal

import msgspec
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from botify.errors import InvalidEventError

LISTEN_EVENT_SCHEMA = "listen_event.v1.json"
MAX_ID = 2**31 - 1
# Every numeric field has a maximum (the schema's): an exporter or an analysis must never
# meet a value its column type cannot hold. 9999-12-31T23:59:59.999Z, in ms.
MAX_TIMESTAMP_MS = 253_402_300_799_999
MAX_LATENCY_S = 3600.0
MAX_INT64 = 2**63 - 1

# The schema's string constraints, once for both codecs (pydantic's and msgspec's).
MAX_EVENT_ID_LENGTH = 64
MAX_RECOMMENDER_LENGTH = 64
RECOMMENDER_PATTERN = r"^[a-z][a-z0-9_]*$"
EXPERIMENT_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
ARM_PATTERN = r"^(C|T[0-9]+)$"

Id = Annotated[int, Field(ge=0, le=MAX_ID)]
Arm = Annotated[str, Field(pattern=ARM_PATTERN)]
# What an experiment's name must look like to travel in an event.
EXPERIMENT_NAME = re.compile(EXPERIMENT_NAME_PATTERN)


class ListenEvent(BaseModel):
    """A listen: what the user played, how long, and what the API served next."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    schema_version: Literal[1] = 1
    event_id: Annotated[str, Field(min_length=1, max_length=MAX_EVENT_ID_LENGTH)]
    message: Literal["next", "last"]
    timestamp: Annotated[int, Field(ge=0, le=MAX_TIMESTAMP_MS)]
    user: Id
    track: Id
    time: Annotated[float, Field(ge=0.0, le=1.0)]
    recommendation: Id | None
    latency: Annotated[float, Field(ge=0.0, le=MAX_LATENCY_S)]
    recommender: Annotated[
        str, Field(min_length=1, max_length=MAX_RECOMMENDER_LENGTH, pattern=RECOMMENDER_PATTERN)
    ]
    model_version: Annotated[int, Field(ge=0, le=MAX_INT64)] | None = None
    experiments: dict[Annotated[str, Field(pattern=EXPERIMENT_NAME_PATTERN)], Arm] = {}

    @field_validator("time", "latency", mode="before")
    @classmethod
    def _finite(cls, value: object) -> object:
        # JSON Schema has no NaN; neither may we. ints are fine for a number field.
        if isinstance(value, bool):
            raise ValueError("must be a number")
        if isinstance(value, int):
            return float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be finite")
        return value

    @model_validator(mode="after")
    def _recommendation_matches_message(self) -> ListenEvent:
        if self.message == "next" and self.recommendation is None:
            raise ValueError("a next event carries a recommendation")
        if self.message == "last" and self.recommendation is not None:
            raise ValueError("a last event carries no recommendation")
        return self

    @property
    def key(self) -> bytes:
        """Kafka record key: the user id, so one user's events stay ordered."""
        return str(self.user).encode()


def new_event_id() -> str:
    # 128 random bits, as uuid4 has, at a third of its cost (this runs per request).
    return os.urandom(16).hex()


def make_listen_event(**fields: object) -> ListenEvent:
    """Build a ListenEvent, raising ``InvalidEventError`` with the reason if it is invalid."""
    fields.setdefault("event_id", new_event_id())
    try:
        return ListenEvent.model_validate(fields)
    except ValidationError as exc:
        raise InvalidEventError(_describe(exc)) from None


def trusted_listen_event(**fields: Any) -> ListenEvent:
    """A ListenEvent from fields the caller has already validated, without validating them
    again: for the API's hot path, where the user, track and time come from a validated
    request, the recommendation from the catalog and the rest from the platform itself.
    ``tests/unit/test_events.py`` checks that it agrees with ``make_listen_event``."""
    fields.setdefault("event_id", new_event_id())
    return ListenEvent.model_construct(**fields)


def encode_listen_event(event: ListenEvent) -> bytes:
    return orjson.dumps(event.model_dump(mode="python"))


def decode_listen_event(raw: bytes | str | None) -> ListenEvent:
    """Decode and validate one record value; ``InvalidEventError`` says what is wrong."""
    if raw is None:
        raise InvalidEventError("record has no value")
    try:
        return ListenEvent.model_validate_json(raw, strict=False)
    except ValidationError as exc:
        raise InvalidEventError(_describe(exc)) from None


_IdMeta = msgspec.Meta(ge=0, le=MAX_ID)


class ListenRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A listen event as the stream worker decodes it: ``ListenEvent``'s fields and values,
    at a fifth of the cost (msgspec builds it in C). Made only by ``decode_listen_record``."""

    schema_version: Literal[1] = 1
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_ID_LENGTH)]
    message: Literal["next", "last"]
    timestamp: Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMESTAMP_MS)]
    user: Annotated[int, _IdMeta]
    track: Annotated[int, _IdMeta]
    time: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    recommendation: Annotated[int, _IdMeta] | None
    latency: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_LATENCY_S)]
    recommender: Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=MAX_RECOMMENDER_LENGTH, pattern=RECOMMENDER_PATTERN),
    ]
    model_version: Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)] | None = None
    experiments: dict[
        Annotated[str, msgspec.Meta(pattern=EXPERIMENT_NAME_PATTERN)],
        Annotated[str, msgspec.Meta(pattern=ARM_PATTERN)],
    ] = {}

    @property
    def key(self) -> bytes:
        """Kafka record key: the user id, as ``ListenEvent.key``."""
        return b"%d" % self.user


_record_decoder = msgspec.json.Decoder(ListenRecord)

# What the stream's decoder gives: the same fields and values from either codec.
DecodedListen = ListenRecord | ListenEvent


def decode_listen_record(raw: bytes | None) -> DecodedListen:
    """``decode_listen_event`` for the stream's hot path: the same verdict and the same field
    values, at a fraction of the cost.

    msgspec decodes the common case: plain ASCII JSON that validates. Whatever it refuses,
    and anything it might read differently from pydantic (string escapes, non-ASCII text,
    a non-finite number), goes to ``decode_listen_event``, which gives the verdict and the
    reason (and may accept what msgspec's stricter types refused, such as ``1.0`` for an
    integer, returning a ``ListenEvent``). ``tests/unit/test_events.py`` checks the two
    agree on valid and invalid records."""
    if raw is None or b"\\" in raw or not raw.isascii():
        return decode_listen_event(raw)
    try:
        event = _record_decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return decode_listen_event(raw)
    # What pydantic's model validators check: a recommendation on next only, finite numbers
    # (time is bounded already).
    if (event.recommendation is None) != (event.message == "last") or not math.isfinite(
        event.latency
    ):
        return decode_listen_event(raw)
    return event


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "record"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
