from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
import msgpack
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import asdict

from botify.errors import InvalidEventError
from botify.settings import REPO_DIR
from botify.training import (
    EXAMPLE_COLUMNS,
    SCHEMA_VERSION,
    TRAINING_EXAMPLE_SCHEMA,
    TrainingExample,
    _check,
    decode_example,
    encode_example,
    example_schema,
    examples_frame,
)


@cache
def schema() -> dict[str, Any]:
    return json.loads((REPO_DIR / "botify" / "schemas" / TRAINING_EXAMPLE_SCHEMA).read_text())


def example(**overrides: Any) -> TrainingExample:
    fields: dict[str, Any] = dict(
        timestamp=1_700_000_000_000,
        user=7,
        session_start=10,
        context=11,
        track=12,
        time=0.25,
        partition=3,
        offset=41,
    )
    return TrainingExample(**(fields | overrides))


def valid_fields() -> dict[str, Any]:
    return {"schema_version": 1} | asdict(example())


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_schema_and_dataclass_name_the_same_fields() -> None:
    assert set(schema()["properties"]) == set(EXAMPLE_COLUMNS) | {"schema_version"}
    assert set(schema()["required"]) == set(schema()["properties"])


@pytest.mark.parametrize(
    "e",
    [
        example(),
        example(time=0.0, offset=0, partition=0, user=0),
        example(time=1.0, timestamp=2**63 - 1, track=2**31 - 1, offset=2**63 - 1),
    ],
)
def test_encoded_examples_validate_against_the_schema_and_decode_to_themselves(
    e: TrainingExample,
) -> None:
    raw = encode_example(e)
    jsonschema.validate(msgpack.unpackb(raw), schema())
    assert decode_example(raw) == e


def test_an_integer_time_decodes_as_a_float() -> None:
    decoded = decode_example(msgpack.packb(valid_fields() | {"time": 1}))
    assert decoded.time == 1.0 and isinstance(decoded.time, float)


BAD = [
    ("time", 1.5),
    ("time", -0.01),
    ("time", "0.5"),
    ("time", True),
    ("user", -1),
    ("user", 2**31),
    ("track", 2.5),
    ("context", None),
    ("session_start", "1"),
    ("partition", -1),
    ("offset", -1),
    ("timestamp", -5),
    ("schema_version", 2),
]


@pytest.mark.parametrize(("field", "value"), BAD)
def test_schema_and_decoder_reject_the_same_bad_records(field: str, value: Any) -> None:
    fields = valid_fields() | {field: value}
    with pytest.raises(InvalidEventError, match=field):
        decode_example(msgpack.packb(fields))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(fields, schema())


def test_nan_time_is_refused() -> None:
    # JSON has no NaN for the schema to refuse, so only the decoder is checked.
    with pytest.raises(InvalidEventError, match="time"):
        decode_example(msgpack.packb(valid_fields() | {"time": float("nan")}))


@pytest.mark.parametrize(
    "fields",
    [
        {k: v for k, v in valid_fields().items() if k != "context"},
        valid_fields() | {"extra": 1},
    ],
    ids=["missing", "extra"],
)
def test_schema_and_decoder_reject_missing_and_unexpected_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidEventError, match="fields"):
        decode_example(msgpack.packb(fields))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(fields, schema())


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"\xc1", b"\x93\x01\x02", msgpack.packb([1, 2]), msgpack.packb({1: 2}), b"{}x"],
)
def test_bad_bytes_give_a_domain_error_with_a_reason(raw: bytes | None) -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_example(raw)
    assert str(info.value)


def test_encoder_refuses_an_example_the_schema_would_refuse() -> None:
    with pytest.raises(InvalidEventError, match="time"):
        encode_example(example(time=2.0))


def test_frame_has_the_documented_columns_and_types_in_order() -> None:
    rows = [example(offset=1), example(offset=2, time=1.0, context=99)]
    frame = examples_frame(rows)
    assert frame.schema == example_schema()
    assert list(frame.schema.items()) == [
        ("timestamp", pl.Int64),
        ("user", pl.Int64),
        ("session_start", pl.Int64),
        ("context", pl.Int64),
        ("track", pl.Int64),
        ("time", pl.Float32),
        ("partition", pl.Int32),
        ("offset", pl.Int64),
        ("recommender", pl.String),
    ]
    assert frame["offset"].to_list() == [1, 2] and frame["context"].to_list() == [11, 99]
    assert frame["time"].to_list() == [0.25, 1.0]


def test_frame_of_no_examples_is_empty_with_the_same_schema() -> None:
    frame = examples_frame([])
    assert frame.is_empty() and frame.schema == example_schema()


def test_key_is_the_source_position_and_timestamp() -> None:
    e = example()
    assert e.key == (3, 41, e.timestamp)


def _as_dict(example: TrainingExample) -> dict[str, Any]:
    """The reference map: the schema's version, then every column by name."""
    return {"schema_version": SCHEMA_VERSION} | {n: getattr(example, n) for n in EXAMPLE_COLUMNS}


_ODD_VALUES = st.one_of(
    st.integers(min_value=-2, max_value=2**64),
    st.sampled_from([True, 0.5, 1, 0, 1.0, -0.0, float("nan"), float("inf"), "7", None]),
    st.text(max_size=120),
)


@given(st.sampled_from([*EXAMPLE_COLUMNS, "recommender"]), _ODD_VALUES)
@settings(max_examples=300, deadline=None)
def test_the_encoder_writes_and_refuses_exactly_what_the_full_check_does(
    name: str, value: Any
) -> None:
    """Its one-expression check for the common case changes nothing: same bytes as packing
    the example's map, same refusals."""
    e = example(**{name: value})
    try:
        _check(_as_dict(e))
        want: bytes | None = msgpack.packb(_as_dict(e))
    except InvalidEventError:
        want = None
    if want is None:
        with pytest.raises(InvalidEventError):
            encode_example(e)
    else:
        assert encode_example(e) == want
