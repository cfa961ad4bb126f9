"""ModelStore.rollback over the in-memory pointers: the version chosen, the history, and a
clear refusal for each bad request."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from botify.errors import ArtifactError, PointerMovedError
from botify.model_store import Announcement, ModelStore
from botify.model_store.pointers import MemoryVersionPointers, PointerMove
from tests.unit.model_store.samples import arrays, meta


class Announcements:
    def __init__(self) -> None:
        self.sent: list[Announcement] = []

    def announce(self, announcement: Announcement) -> bool:
        self.sent.append(announcement)
        return True


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models", None, keep_versions=2)


async def publish(store: ModelStore, count: int, name: str = "contextual") -> None:
    for i in range(count):
        await store.publish(meta(name), arrays(seed=i))


def moves(history: list[PointerMove]) -> list[tuple[str, int | None, int]]:
    return [(m.action, m.previous, m.version) for m in history]


async def test_rollback_defaults_to_the_newest_version_before_the_current_one(
    store: ModelStore,
) -> None:
    store.keep_versions = 5
    await publish(store, 3)
    move = await store.rollback("contextual")
    assert (move.action, move.previous, move.version) == ("rollback", 3, 2)
    assert await store.current("contextual") == 2
    await store.rollback("contextual")  # again: one further back
    assert await store.current("contextual") == 1
    assert moves(await store.promotions("contextual")) == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("promote", 2, 3),
        ("rollback", 3, 2),
        ("rollback", 2, 1),
    ]


async def test_the_default_is_the_version_served_before_never_one_rolled_back_from(
    store: ModelStore,
) -> None:
    store.keep_versions = 5
    await publish(store, 3)
    await store.rollback("contextual")  # v3 -> v2: v3 is known bad
    await publish(store, 1)  # the trainer promotes v4 over v2
    move = await store.rollback("contextual")
    assert (move.previous, move.version) == (4, 2)
    # From v2 (current again by a rollback): the version served before v2 was v1, not v4.
    move = await store.rollback("contextual")
    assert (move.previous, move.version) == (2, 1)


async def test_the_default_skips_a_pruned_previous_version_for_the_one_served_before_it(
    store: ModelStore,
) -> None:
    store.keep_versions = 5
    await publish(store, 2)
    await store.rollback("contextual", 1)  # v2 -> v1
    await publish(store, 2)  # v3, v4
    shutil.rmtree(store.path("contextual", 3))
    move = await store.rollback("contextual")
    assert (move.previous, move.version) == (4, 1)  # not v3 (gone), not v2 (rolled back from)


async def test_without_history_the_default_is_the_newest_version_on_disk_before_it(
    store: ModelStore,
) -> None:
    store.keep_versions = 5
    await publish(store, 3)
    store._pointers.moves.clear()  # type: ignore[attr-defined]
    move = await store.rollback("contextual")
    assert (move.previous, move.version) == (3, 2)


async def test_a_named_version_is_taken_and_the_next_publication_moves_past_it(
    store: ModelStore,
) -> None:
    await publish(store, 2)
    await store.rollback("contextual", 1)
    assert await store.current("contextual") == 1
    # Numbers are never reused: the next version is above the rolled-back one.
    assert (await store.publish(meta(), arrays())).version == 3
    assert await store.current("contextual") == 3


async def test_a_rollback_is_announced_as_one(store: ModelStore) -> None:
    announcements = Announcements()
    store._announcer = announcements  # type: ignore[assignment]
    await publish(store, 2)
    await store.rollback("contextual")
    last = announcements.sent[-1]
    assert (last.model, last.version, last.rollback) == ("contextual", 1, True)
    assert last.path == str(store.path("contextual", 1).resolve())
    assert not announcements.sent[0].rollback


async def test_a_rolled_back_version_is_kept_by_later_prunes(store: ModelStore) -> None:
    await publish(store, 2)
    await store.rollback("contextual", 1)
    await publish(store, 1)  # v3: keep_versions=2 keeps 2 and 3
    assert store.versions("contextual") == [2, 3]
    await store.rollback("contextual", 2)
    await publish(store, 2)  # v4, v5; the pointer follows them
    assert store.versions("contextual") == [4, 5]


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [
        (
            "nothing_here",
            None,
            "model 'nothing_here' has no published version (models in {dir}: contextual)",
        ),
        ("Bad-Name", None, "invalid model name 'Bad-Name'"),
        ("contextual", 2, "contextual v2 is already the current version"),
        ("contextual", 9, "contextual v9 was never published (in {dir}/contextual: v1, v2)"),
    ],
)
async def test_bad_requests_are_refused_with_what_is_wrong(
    store: ModelStore, model: str, version: int | None, message: str
) -> None:
    await publish(store, 2)
    with pytest.raises(ArtifactError) as refused:
        await store.rollback(model, version)
    assert str(refused.value).startswith(message.format(dir=store.models_dir))
    assert await store.current("contextual") == 2


async def test_a_pruned_version_is_refused(store: ModelStore) -> None:
    await publish(store, 3)  # keep_versions=2: v1 is gone
    with pytest.raises(ArtifactError, match=r"contextual v1 is not in .*/contextual: pruned"):
        await store.rollback("contextual", 1)
    assert await store.current("contextual") == 3


async def test_without_an_older_version_there_is_nothing_to_roll_back_to(
    store: ModelStore,
) -> None:
    await publish(store, 1)
    with pytest.raises(ArtifactError, match="no version before v1 to roll back to"):
        await store.rollback("contextual")


async def test_a_version_whose_files_do_not_load_is_refused_before_the_pointer_moves(
    store: ModelStore,
) -> None:
    await publish(store, 2)
    (store.path("contextual", 1) / "track_ids.npy").unlink()
    with pytest.raises(ArtifactError, match="track_ids.npy is missing"):
        await store.rollback("contextual", 1)
    assert await store.current("contextual") == 2
    assert [m.action for m in await store.promotions("contextual")] == ["promote", "promote"]


async def test_a_pointer_that_moved_meanwhile_is_left_alone() -> None:
    pointers = MemoryVersionPointers()
    for version in (1, 2, 3):
        assert await pointers.flip("m", version, at_ms=version)
    # The caller saw v2, but a trainer has flipped to v3 since.
    assert await pointers.rollback("m", 1, seen=2, at_ms=9) == 3
    assert await pointers.current("m") == 3
    assert [m.version for m in await pointers.history("m")] == [1, 2, 3]


async def test_a_publication_judged_against_a_version_rolled_away_from_is_not_made_current(
    store: ModelStore,
) -> None:
    store.keep_versions = 5
    await publish(store, 2)
    await store.rollback("contextual", 1)  # while a trainer judged its candidate against v2
    with pytest.raises(PointerMovedError, match="judged against v2, but the pointer names v1"):
        await store.publish(meta(), arrays(), replacing=2)
    assert await store.current("contextual") == 1
    assert store.versions("contextual") == [1, 2, 3]  # the files stay
    published = await store.publish(meta(), arrays(), replacing=1)
    assert published.version == 4 and await store.current("contextual") == 4


async def test_a_prune_puts_back_a_version_a_rollback_made_current_meanwhile(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish(store, 2)
    pointers = store._pointers
    assert isinstance(pointers, MemoryVersionPointers)
    trash_old = store._trash_old

    def trash_then_roll_back(name: str, current: int | None) -> dict[int, Path]:
        trashed = trash_old(name, current)  # v1 is in the trash: v3 is current
        pointers.pointers[name] = 1  # botify models rollback contextual 1, right now
        return trashed

    monkeypatch.setattr(store, "_trash_old", trash_then_roll_back)
    await publish(store, 1)
    assert await store.current("contextual") == 1
    assert store.load("contextual", 1).meta.version == 1
    assert [p.name for p in (store.models_dir / "contextual").iterdir() if p.name[0] == "."] == []


async def test_a_rollback_to_a_version_pruned_once_the_pointer_moved_is_undone(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish(store, 2)
    pointers = store._pointers
    rollback = pointers.rollback

    async def rollback_then_prune(model: str, version: int, seen: int, at_ms: int) -> int | None:
        before = await rollback(model, version, seen, at_ms)
        if version == 1:
            shutil.rmtree(store.path(model, 1))  # a trainer's prune, after the load
        return before

    monkeypatch.setattr(pointers, "rollback", rollback_then_prune)
    with pytest.raises(
        ArtifactError, match="v1 was pruned while rolling back to it: .* back at v2"
    ):
        await store.rollback("contextual", 1)
    assert await store.current("contextual") == 2
    assert moves(await store.promotions("contextual"))[-2:] == [
        ("rollback", 2, 1),
        ("rollback", 1, 2),
    ]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        b'{"action":"promote","version":"x","previous":1,"at_ms":1}',
        b'{"action":"demote","version":2,"previous":1,"at_ms":1}',
        b'{"action":"promote","version":2,"at_ms":1}',
    ],
)
def test_a_malformed_history_entry_is_an_artifact_error(raw: bytes) -> None:
    with pytest.raises(ArtifactError, match="malformed pointer move"):
        PointerMove.from_bytes(raw)
