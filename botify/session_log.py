"""The API's own record of the current session: what each request reported and was served.

The stream's ``UserState`` trails the requests by tens of milliseconds, which can be longer than
a whole session of a fast client; the API keeps this record itself, in the same Redis round trip
as the state read, so a recommender sees every listen of the session, the last one included.
Stored as a Redis list: a listen as ``b"<track>:<time>"``, a served track as ``b"<track>"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionLog:
    # Every track listened to or served this session, in request order (a served track the
    # user then played appears twice).
    tracks: tuple[int, ...] = ()
    # (track, fraction listened) as the requests reported them, oldest first.
    listens: tuple[tuple[int, float], ...] = ()


def encode_request(track: int, time: float, recommendation: int) -> tuple[bytes, bytes]:
    """The two list entries one ``/next`` request appends."""
    return f"{track}:{time!r}".encode(), str(recommendation).encode()


def parse_session(entries: Iterable[bytes | str]) -> SessionLog:
    tracks: list[int] = []
    listens: list[tuple[int, float]] = []
    for raw in entries:
        text = raw.decode() if isinstance(raw, bytes) else raw
        track, sep, time = text.partition(":")
        tracks.append(int(track))
        if sep:
            listens.append((int(track), float(time)))
    return SessionLog(tuple(tracks), tuple(listens))
