"""Dead letters: the copy of a record that could not be processed, as the dead-letter topic
holds it (``botify/schemas/dead_letter.v1.json``).

A dead letter is the source record's key and value with headers saying why it was set aside
and where it came from. The copy is bounded: a value longer than the limit is cut (a record
near the broker's size limit would otherwise make a copy the producer refuses, and stall
its partition), and the headers give the original sizes, so a reader knows what it lacks and
finds the whole record at its source coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

# Appended headers only, never renamed or reinterpreted: readers ignore what they do not know.
VERSION = 1
SCHEMA = "dead_letter.v1.json"
# A key longer than this is cut too (botify's are user ids, a few bytes).
MAX_KEY_BYTES = 256
MAX_REASON_BYTES = 1000
# Delivery errors that concern the record itself, not the broker's health: sending the same
# copy again cannot succeed, a smaller one may.
RECORD_ERRORS = frozenset(
    {
        "MSG_SIZE_TOO_LARGE",
        "INVALID_MSG_SIZE",
        "INVALID_MSG",
        "INVALID_RECORD",
        "RECORD_LIST_TOO_LARGE",
        "MESSAGE_TOO_LARGE",
        "CORRUPT_MESSAGE",
    }
)

# librdkafka's own header type (values are always bytes here).
Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record set aside: its source coordinates, its key and value, and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str

    def copy(self, max_value_bytes: int) -> tuple[bytes | None, bytes | None, Headers]:
        """(key, value, headers) of the dead-letter record, its value cut to at most
        ``max_value_bytes`` (0: no value at all)."""
        key, value = self.key, self.value
        cut = []
        if key is not None and len(key) > MAX_KEY_BYTES:
            key, cut = key[:MAX_KEY_BYTES], ["key"]
        if value is not None and len(value) > max_value_bytes:
            value, cut = (value[:max_value_bytes] or None), [*cut, "value"]
        headers: Headers = [
            ("botify-dead-letter-version", str(VERSION).encode()),
            ("botify-error", _cut_text(self.reason, MAX_REASON_BYTES)),
            ("botify-source-topic", self.topic.encode()),
            ("botify-source-partition", str(self.partition).encode()),
            ("botify-source-offset", str(self.offset).encode()),
            ("botify-source-key-size", _size(self.key)),
            ("botify-source-value-size", _size(self.value)),
            ("botify-truncated", ",".join(cut).encode()),
        ]
        return key, value, headers

    def undeliverable(self, error: str) -> DeadLetter:
        """The same dead letter, its reason saying why its full copy was refused."""
        return DeadLetter(
            self.topic,
            self.partition,
            self.offset,
            self.key,
            self.value,
            f"{self.reason} (its copy was refused: {error})",
        )


def _size(part: bytes | None) -> bytes:
    # -1: the source record had no key (or no value) at all.
    return str(-1 if part is None else len(part)).encode()


def _cut_text(text: str, limit: int) -> bytes:
    # Cut on a character boundary: the header stays valid UTF-8.
    return text.encode()[:limit].decode(errors="ignore").encode()
