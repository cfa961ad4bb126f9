"""Announcements: their wire form, checked against the schema both ways."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest

from botify.errors import InvalidEventError
from botify.model_store import (
    Announcement,
    announcement_from_bytes,
    model_meta_schema,
)


def announcement_schema() -> jsonschema.Draft202012Validator:
    defs = model_meta_schema()["$defs"]
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/announcement", "$defs": defs})


def test_announcement_round_trips_and_validates_against_the_schema() -> None:
    sent = Announcement("contextual", 3, "/models/contextual/00000003", 17)
    announcement_schema().validate(orjson.loads(sent.to_bytes()))
    assert announcement_from_bytes(sent.to_bytes()) == sent


BAD_ANNOUNCEMENTS = {
    "version 0": {"version": 0},
    "bad model": {"model": "../x"},
    "missing path": {"path": None},
    "text version": {"version": "3"},
    "bool version": {"version": True},
    "extra field": {"extra": 1},
}


@pytest.mark.parametrize("changes", BAD_ANNOUNCEMENTS.values(), ids=BAD_ANNOUNCEMENTS.keys())
def test_schema_and_decoder_reject_the_same_announcements(changes: dict[str, Any]) -> None:
    doc = {"model": "contextual", "version": 3, "path": "/m", "created_ms": 1} | changes
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(jsonschema.ValidationError):
        announcement_schema().validate(doc)
    with pytest.raises(InvalidEventError):
        announcement_from_bytes(orjson.dumps(doc))


@pytest.mark.parametrize("raw", [None, b"", b"{", b"[1]"])
def test_undecodable_announcements_raise_invalid_event(raw: bytes | None) -> None:
    with pytest.raises(InvalidEventError):
        announcement_from_bytes(raw)


def test_a_rollback_is_marked_and_a_promotion_reads_as_before() -> None:
    rollback = Announcement("contextual", 2, "/models/contextual/00000002", 17, rollback=True)
    announcement_schema().validate(orjson.loads(rollback.to_bytes()))
    assert announcement_from_bytes(rollback.to_bytes()) == rollback
    # Readers from before rollbacks refuse unknown fields: a promotion carries none.
    promotion = Announcement("contextual", 3, "/models/contextual/00000003", 17)
    assert "rollback" not in orjson.loads(promotion.to_bytes())
