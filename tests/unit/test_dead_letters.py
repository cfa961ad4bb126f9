"""Dead-letter copies: bounded whatever the record, with its coordinates, sizes and reason."""

from __future__ import annotations

import json

import jsonschema
import pytest

from botify.dead_letters import MAX_KEY_BYTES, DeadLetter
from botify.settings import REPO_DIR

SCHEMA = json.loads((REPO_DIR / "botify" / "schemas" / "dead_letter.v1.json").read_text())


def as_object(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {name: value.decode() for name, value in headers}


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize(
    ("key", "value", "limit", "truncated"),
    [
        (b"77", b"{}", 100, ""),
        (None, None, 100, ""),
        (b"77", b"a" * 1_010_000, 65_536, "value"),
        (b"k" * 1000, b"{}", 100, "key"),
        (b"k" * 1000, b"a" * 1000, 0, "key,value"),
    ],
)
def test_a_copy_is_bounded_and_says_what_it_lacks(
    key: bytes | None, value: bytes | None, limit: int, truncated: str
) -> None:
    letter = DeadLetter("botify.listens.v1", 3, 12345, key, value, "not an event")
    k, v, headers = letter.copy(limit)
    fields = as_object(headers)
    jsonschema.validate(fields, SCHEMA)
    assert len(k or b"") <= MAX_KEY_BYTES and len(v or b"") <= limit
    assert (k or b"") == (key or b"")[:MAX_KEY_BYTES] and (v or b"") == (value or b"")[:limit]
    assert fields["botify-truncated"] == truncated
    assert fields["botify-source-topic"] == "botify.listens.v1"
    assert (fields["botify-source-partition"], fields["botify-source-offset"]) == ("3", "12345")
    assert fields["botify-source-key-size"] == str(-1 if key is None else len(key))
    assert fields["botify-source-value-size"] == str(-1 if value is None else len(value))
    assert fields["botify-error"] == "not an event"


def test_a_long_reason_is_cut_on_a_character_boundary() -> None:
    _, _, headers = DeadLetter("t", 0, 0, None, b"x", "é" * 2000).copy(10)
    reason = as_object(headers)["botify-error"]
    assert len(reason.encode()) <= 1000 and set(reason) == {"é"}


def test_an_undeliverable_copy_keeps_its_coordinates_and_says_why() -> None:
    letter = DeadLetter("t", 1, 2, b"k", b"v", "bad").undeliverable("MSG_SIZE_TOO_LARGE")
    assert letter.reason == "bad (its copy was refused: MSG_SIZE_TOO_LARGE)"
    assert (letter.partition, letter.offset, letter.key) == (1, 2, b"k")
