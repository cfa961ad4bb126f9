from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botify.errors import InvalidEventError
from botify.events import (
    MAX_INT64,
    MAX_LATENCY_S,
    MAX_TIMESTAMP_MS,
    ListenEvent,
    ListenRecord,
    decode_listen_event,
    decode_listen_record,
    encode_listen_event,
    make_listen_event,
)
from botify.settings import REPO_DIR
from tests.factories import listen


@cache
def listen_event_schema() -> dict[str, Any]:
    return json.loads((REPO_DIR / "botify" / "schemas" / "listen_event.v1.json").read_text())


def valid_fields() -> dict[str, Any]:
    return dict(
        event_id="abc",
        message="next",
        timestamp=1,
        user=1,
        track=2,
        time=0.5,
        recommendation=3,
        latency=0.001,
        recommender="random",
        model_version=None,
        experiments={"AA": "C"},
    )


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(listen_event_schema())


@pytest.mark.parametrize("message", ["next", "last"])
def test_encoded_events_validate_against_the_schema(message: str) -> None:
    event = listen(message=message, experiments={"AA": "T1", "RECOMMENDERS": "C"})
    jsonschema.validate(orjson.loads(encode_listen_event(event)), listen_event_schema())


def test_decode_inverts_encode() -> None:
    event = listen(experiments={"X": "T3"})
    assert decode_listen_event(encode_listen_event(event)) == event


BAD = [
    ("time", float("nan")),
    ("time", 1.01),
    ("time", -0.1),
    ("user", -1),
    ("user", 2**31),
    ("track", "7"),
    ("message", "skip"),
    ("recommendation", None),
    ("experiments", {"A": "X"}),
    ("recommender", "Not Snake"),
    ("latency", -1.0),
    ("timestamp", 1.5),
    ("timestamp", 2**63),
    ("timestamp", 253_402_300_800_000),
    ("latency", 3600.5),
    ("model_version", 2**63),
    ("event_id", ""),
]


@pytest.mark.parametrize(("field", "value"), BAD)
def test_schema_and_model_reject_the_same_bad_records(field: str, value: Any) -> None:
    fields = valid_fields() | {field: value}
    with pytest.raises(InvalidEventError):
        make_listen_event(**fields)
    if not (isinstance(value, float) and value != value):  # JSON has no NaN to validate
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(fields, listen_event_schema())


def test_every_numeric_field_of_the_schema_has_a_maximum() -> None:
    properties = listen_event_schema()["properties"]
    numeric = {
        name
        for name, spec in properties.items()
        if {"integer", "number"}
        & set(spec.get("type", []) if isinstance(spec.get("type"), list) else [spec.get("type")])
    }
    assert numeric == {"timestamp", "user", "track", "time", "recommendation", "latency",
                       "model_version"}  # fmt: skip
    assert {n for n in numeric if "maximum" not in properties[n]} == set()


def test_the_largest_values_the_schema_allows_are_accepted() -> None:
    fields = valid_fields() | {"timestamp": 253_402_300_799_999, "latency": 3600.0,
                               "model_version": 2**63 - 1, "user": 2**31 - 1}  # fmt: skip
    jsonschema.validate(fields | {"schema_version": 1}, listen_event_schema())
    assert decode_listen_event(orjson.dumps(fields)).timestamp == 253_402_300_799_999


def test_last_event_must_not_carry_a_recommendation() -> None:
    fields = valid_fields() | {"message": "last", "recommendation": 3}
    with pytest.raises(InvalidEventError, match="no recommendation"):
        make_listen_event(**fields)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(fields, listen_event_schema())


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b'{"schema_version": 2}',
        None,
        json.dumps(valid_fields() | {"extra": 1}).encode(),
    ],
)
def test_consumer_side_decode_rejects_bad_records_with_a_reason(raw: bytes | None) -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_listen_event(raw)
    assert str(info.value)


def test_a_trusted_event_encodes_exactly_as_a_validated_one() -> None:
    from botify.events import encode_listen_event, make_listen_event, trusted_listen_event

    # A served model version and two experiments: the optional parts encoded too.
    fields = {
        **valid_fields(),
        "timestamp": 1_700_000_000_000,
        "model_version": 4,
        "experiments": {"AA": "C", "RECOMMENDERS": "T1"},
    }
    trusted = trusted_listen_event(**fields)
    assert encode_listen_event(trusted) == encode_listen_event(make_listen_event(**fields))
    assert decode_listen_event(encode_listen_event(trusted)) == trusted


def _verdict(decode: Any, raw: bytes) -> dict[str, Any] | str:
    """The fields a decoder reads from ``raw``, or the reason it refuses it."""
    try:
        event = decode(raw)
    except InvalidEventError as exc:
        return f"invalid: {exc}"
    return {name: getattr(event, name) for name in ListenEvent.model_fields}


_FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=2**64),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.5, 1e308, -1.0, 2.0**31]),
    st.sampled_from(["", "C", "T1", "T", "next", "last", "random", "Not Snake", "a\n", "é", "7"]),
    st.text(max_size=70),
    st.dictionaries(st.text(max_size=3), st.sampled_from(["C", "T2", "X"]), max_size=2),
)


@given(
    st.sampled_from([*valid_fields(), "extra"]),
    _FIELD_VALUES,
    st.sampled_from(["next", "last"]),
    st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_the_streams_fast_decode_agrees_with_the_validated_one(
    field: str, value: Any, message: str, drop: bool
) -> None:
    """Same events, same values, same verdict, the reason included: whatever the fast path
    is unsure of, pydantic decides."""
    fields = valid_fields() | {"message": message}
    if message == "last":
        fields["recommendation"] = None
    if drop:
        fields.pop(field, None)
    else:
        fields[field] = value
    try:
        raw = orjson.dumps(fields)
    except TypeError:  # an integer too large for JSON
        return
    assert _verdict(decode_listen_record, raw) == _verdict(decode_listen_event, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user": 1, "user": 2}',
        json.dumps(valid_fields() | {"latency": 1e999}).encode(),
        json.dumps(valid_fields()).replace('"abc"', '"a\\u00e9"').encode(),
        json.dumps(valid_fields()).replace('"random"', '"random\\n"').encode(),
        json.dumps(valid_fields()).replace('"track": 2', '"track": 2.0').encode(),
        json.dumps(valid_fields()).replace('"user": 1', '"user": 3, "user": 1').encode(),
        json.dumps(valid_fields()).encode() + b" x",
        b"  " + json.dumps(valid_fields()).encode() + b"\n",
        None,
        b"",
        # Just past each maximum of the schema (the fast path once missed all three).
        json.dumps(valid_fields() | {"timestamp": MAX_TIMESTAMP_MS + 1}).encode(),
        json.dumps(valid_fields() | {"latency": MAX_LATENCY_S + 0.5}).encode(),
        json.dumps(valid_fields() | {"model_version": MAX_INT64 + 1}).encode(),
        json.dumps(valid_fields() | {"timestamp": MAX_TIMESTAMP_MS}).encode(),
    ],
)
def test_the_streams_fast_decode_agrees_on_edge_cases(raw: bytes | None) -> None:
    assert _verdict(decode_listen_record, raw) == _verdict(decode_listen_event, raw)


def test_the_fast_decode_of_a_valid_event_is_its_record() -> None:
    event = listen(experiments={"X": "T3"})
    record = decode_listen_record(encode_listen_event(event))
    assert isinstance(record, ListenRecord)
    assert _verdict(lambda raw: record, b"") == event.model_dump()
    assert record.key == event.key
