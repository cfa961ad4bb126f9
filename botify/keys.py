"""Every Redis key botify uses comes from here."""

from __future__ import annotations

PREFIX = "botify"


def user_state(user: int) -> str:
    """Hash written by the stream processor: ``s`` (msgpack UserState), ``p``/``o`` (position)."""
    return f"{PREFIX}:user:{user}:state"


def user_session(user: int) -> str:
    """List written by the API: tracks played or served in the user's current session."""
    return f"{PREFIX}:user:{user}:session"


def model_sequence(model: str) -> str:
    """Counter INCRed to allocate the model's next version number."""
    return f"{PREFIX}:model:{model}:seq"


def model_current(model: str) -> str:
    """The version of the model to serve (an integer): the source of truth for every reader."""
    return f"{PREFIX}:model:{model}:current"


def model_promotions(model: str) -> str:
    """Every move of the model's pointer, oldest first: a list of JSON documents
    (``botify.model_store.pointers.PointerMove``), appended by the script that moves it."""
    return f"{PREFIX}:model:{model}:promotions"


# Plays per track: a hash (HINCRBY, O(1); nothing ranks tracks by plays).
TRACK_PLAY_COUNTS = f"{PREFIX}:tracks:play_counts"
# Plays per track as a sorted set, written by workers before the hash above; still read (and
# added to it) by ``track_stats``, so counts from before an upgrade, or from an old worker
# during a rolling one, are kept. Nothing writes it any more.
LEGACY_TRACK_PLAYS = f"{PREFIX}:tracks:plays"
TRACK_LISTEN_TIME = f"{PREFIX}:tracks:listen_time"
STREAM_APPLIED = f"{PREFIX}:stream:applied_total"
STREAM_DUPLICATES = f"{PREFIX}:stream:duplicates_total"
STREAM_DEAD_LETTERS = f"{PREFIX}:stream:dead_letters_total"
# Records neither applied nor dead-lettered: their dead letter stayed undeliverable.
STREAM_SKIPPED = f"{PREFIX}:stream:skipped_total"
# Listens applied whose training example failed validation (logged with its source).
STREAM_EXAMPLES_SKIPPED = f"{PREFIX}:stream:examples_skipped_total"
