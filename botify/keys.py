"""Every Redis key botify uses comes from here."""

from __future__ import annotations

PREFIX = "botify"


def user_state(user: int) -> str:
    """Hash written by the stream processor: ``s`` (msgpack UserState), ``p``/``o`` (position)."""
    return f"{PREFIX}:user:{user}:state"


def user_session(user: int) -> str:
    """List written by the API: tracks played or served in the user's current session."""
    return f"{PREFIX}:user:{user}:session"


TRACK_PLAYS = f"{PREFIX}:tracks:plays"
TRACK_LISTEN_TIME = f"{PREFIX}:tracks:listen_time"
STREAM_APPLIED = f"{PREFIX}:stream:applied_total"
STREAM_DUPLICATES = f"{PREFIX}:stream:duplicates_total"
STREAM_DEAD_LETTERS = f"{PREFIX}:stream:dead_letters_total"
