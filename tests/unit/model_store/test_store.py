"""ModelStore: publication order, version numbers, pruning, loading."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from botify.artifacts import row_index
from botify.errors import ArtifactError
from botify.model_store import (
    Announcement,
    ModelStore,
    artifact_files,
    read_meta,
)
from botify.settings import ModelSettings, Settings
from tests.unit.model_store.samples import arrays, meta, without


class RecordingAnnouncer:
    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.sent: list[tuple[Announcement, int | None]] = []

    def announce(self, announcement: Announcement) -> bool:
        # What the pointer said when the announcement went out.
        pointers = self.store._pointers.pointers  # type: ignore[attr-defined]
        self.sent.append((announcement, pointers.get(announcement.model)))
        return True


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models", None, keep_versions=3)


async def test_publish_allocates_increasing_versions_and_moves_the_pointer(
    store: ModelStore,
) -> None:
    assert await store.current("contextual") is None
    published = [await store.publish(meta(version=0), arrays(seed=i)) for i in range(3)]
    assert [m.version for m in published] == [1, 2, 3]
    assert await store.current("contextual") == 3
    assert store.versions("contextual") == [1, 2, 3]
    assert (store.models_dir / "contextual" / "00000003" / "meta.json").exists()
    loaded = store.load("contextual", 3)
    assert loaded.meta == published[2]
    np.testing.assert_array_equal(loaded.arrays["user_top"], arrays(seed=2)["user_top"])
    assert [m.version for m in store.published("contextual")] == [1, 2, 3]


async def test_models_have_independent_version_sequences(store: ModelStore) -> None:
    await store.publish(meta("contextual"), arrays())
    await store.publish(meta("contextual"), arrays())
    assert (await store.publish(meta("dae"), arrays())).version == 1
    assert await store.current("contextual") == 2


async def test_announcement_goes_out_after_the_pointer_names_the_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, None)
    announcer = RecordingAnnouncer(store)
    store._announcer = announcer  # type: ignore[assignment]
    published = await store.publish(meta(), arrays())
    [(announcement, pointer_then)] = announcer.sent
    assert pointer_then == published.version == announcement.version
    assert Path(announcement.path) == store.path("contextual", published.version).resolve()


async def test_a_publish_failing_midway_leaves_no_version_directory_behind(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.publish(meta(), arrays())
    real_save = np.save
    seen_during_write: list[list[int]] = []
    saved = 0

    def failing_save(file: Any, arr: np.ndarray, **kwargs: Any) -> None:
        nonlocal saved
        seen_during_write.append(store.versions("contextual"))
        saved += 1
        if saved == 4:
            raise OSError(28, "No space left on device")
        real_save(file, arr, **kwargs)

    monkeypatch.setattr(artifact_files.np, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        await store.publish(meta(), arrays())
    monkeypatch.undo()
    # Readers never saw a second version, not even while its files were being written.
    assert seen_during_write == [[1]] * 4
    assert sorted(os.listdir(store.models_dir / "contextual")) == ["00000001"]
    assert await store.current("contextual") == 1
    assert (await store.publish(meta(), arrays())).version == 3


async def test_an_invalid_artifact_takes_no_version_number(store: ModelStore) -> None:
    with pytest.raises(ArtifactError):
        await store.publish(meta(), without("track_ids"))
    assert not (store.models_dir / "contextual").exists() or not store.versions("contextual")
    assert (await store.publish(meta(), arrays())).version == 1


async def test_pruning_keeps_the_newest_versions(store: ModelStore) -> None:
    for _ in range(5):
        await store.publish(meta(), arrays())
    assert store.versions("contextual") == [3, 4, 5]
    assert [m.version for m in store.published("contextual")] == [3, 4, 5]


async def test_pruning_never_removes_the_current_version(store: ModelStore) -> None:
    for _ in range(4):
        await store.publish(meta(), arrays())
    assert store.versions("contextual") == [2, 3, 4]
    store.keep_versions = 1
    assert store.prune("contextual", current=2) == [3]
    assert store.versions("contextual") == [2, 4]


async def test_pruning_clears_leftovers_of_crashed_publishers(store: ModelStore) -> None:
    for _ in range(4):
        await store.publish(meta(), arrays())
    model_dir = store.models_dir / "contextual"
    (model_dir / ".tmp-00000001-dead").mkdir()  # older than every kept version
    (model_dir / ".trash-00000001-dead").mkdir()
    (model_dir / ".tmp-00000009-live").mkdir()  # may be a publisher still writing
    store.prune("contextual", current=4)
    assert sorted(os.listdir(model_dir)) == [
        ".tmp-00000009-live",
        "00000002",
        "00000003",
        "00000004",
    ]


async def test_a_newer_version_is_never_replaced_by_an_older_one(store: ModelStore) -> None:
    await store.publish(meta(), arrays())
    await store.publish(meta(), arrays())
    pointers = store._pointers
    assert not await pointers.flip("contextual", 1, b"{}")
    assert await store.current("contextual") == 2


async def test_versions_continue_above_those_on_disk_after_the_pointers_are_lost(
    tmp_path: Path,
) -> None:
    first = ModelStore(tmp_path, None)
    for _ in range(3):
        await first.publish(meta(), arrays())
    # A new pointer store (a flushed Redis) over the same files.
    again = ModelStore(tmp_path, None)
    assert (await again.publish(meta(), arrays())).version == 4


async def test_history_leaves_out_unreadable_versions(store: ModelStore) -> None:
    await store.publish(meta(), arrays())
    await store.publish(meta(), arrays())
    (store.path("contextual", 1) / "meta.json").write_text("{")
    assert [m.version for m in store.published("contextual")] == [2]


async def test_load_refuses_a_missing_version_and_a_mislabelled_one(store: ModelStore) -> None:
    await store.publish(meta(), arrays())
    with pytest.raises(ArtifactError, match="pruned"):
        store.load("contextual", 7)
    shutil.copytree(store.path("contextual", 1), store.path("contextual", 2))
    with pytest.raises(ArtifactError, match="not contextual v2"):
        store.load("contextual", 2)
    assert read_meta(store.path("contextual", 2)).version == 1


@pytest.mark.parametrize("name", ["../etc", "Contextual", "", "a" * 65])
async def test_model_names_that_could_escape_the_directory_are_refused(
    store: ModelStore, name: str
) -> None:
    with pytest.raises(ArtifactError, match="invalid model name"):
        await store.publish(meta(name=name), arrays())
    with pytest.raises(ArtifactError, match="invalid model name"):
        store.load(name, 1)


def test_models_directory_is_under_the_run_directory_unless_absolute(tmp_path: Path) -> None:
    assert Settings().models.path(Path("runs")) == Path("runs/models")
    assert ModelSettings(dir=tmp_path).path(Path("runs")) == tmp_path
    store = ModelStore.from_settings(Settings(run_dir=tmp_path), None)
    assert store.models_dir == tmp_path / "models"
    assert store.keep_versions == 5


def test_row_index_maps_each_id_to_its_row_across_build_steps() -> None:
    ids = np.random.default_rng(0).permutation(10_000).astype(np.int64) + 7
    rows = row_index(ids)
    assert len(rows) == ids.size
    assert all(rows[int(t)] == i for i, t in enumerate(ids))


async def test_versions_with_the_same_track_ids_share_one_row_index(store: ModelStore) -> None:
    await store.publish(meta(), arrays(seed=1))
    await store.publish(meta(), arrays(seed=2))
    first, second = store.load("contextual", 1), store.load("contextual", 2)
    assert first.track_row is second.track_row
    assert first.track_row == {100 + i: i for i in range(6)}
    other = row_index(np.array([100, 101], dtype=np.int64))
    assert other == {100: 0, 101: 1} and other is not first.track_row
