from __future__ import annotations

from botify.session_log import SessionLog, encode_request, parse_session


def test_a_requests_entries_parse_back_to_its_listen_and_answer() -> None:
    entries = [*encode_request(3, 1.0, 8), *encode_request(8, 0.37, 9)]
    assert parse_session(entries) == SessionLog((3, 8, 8, 9), ((3, 1.0), (8, 0.37)))


def test_parse_session_takes_redis_bytes_and_plain_strings_alike() -> None:
    assert parse_session([b"5:0.5", "6"]) == parse_session(["5:0.5", b"6"])


def test_an_empty_record_is_an_empty_session() -> None:
    assert parse_session([]) == SessionLog()
