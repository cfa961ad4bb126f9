from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest

from botify.artifacts import DataWindow, ModelMeta, row_index
from botify.errors import ArtifactError, InvalidEventError
from botify.model_store import (
    Announcement,
    ModelStore,
    announcement_from_bytes,
    artifact_files,
    model_meta_schema,
    read_artifact,
    read_meta,
    write_artifact,
)
from botify.settings import ModelSettings, Settings


def meta(name: str = "contextual", version: int = 1, **changes: Any) -> ModelMeta:
    base = ModelMeta(
        name=name,
        version=version,
        parent=None,
        created_ms=1_700_000_000_000,
        window=DataWindow(first_ms=1, last_ms=2, examples=3),
        metrics={"hr@10": 0.25},
        params={"dim": 8, "lr": 0.01, "layers": [1, 2]},
    )
    return dataclasses.replace(base, **changes)


def arrays(
    n: int = 6, users: int = 3, k: int = 4, d: int = 2, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.arange(100, 100 + n, dtype=np.int64)
    neighbours = rng.choice(ids, size=(n, k)).astype(np.int64)
    neighbours[0, -1] = -1  # padding
    return {
        "track_ids": ids,
        "track_neighbours": neighbours,
        "user_ids": np.arange(users, dtype=np.int64),
        "user_top": rng.choice(ids, size=(users, k)).astype(np.int64),
        "context_emb": rng.normal(size=(n, d)).astype(np.float32),
        "track_emb": rng.normal(size=(n, d)).astype(np.float32),
        "user_emb": rng.normal(size=(users, d)).astype(np.float32),
        "track_bias": rng.normal(size=n).astype(np.float32),
        "contextual_weights": rng.normal(size=(3, 3)),  # a model's own extra array
    }


def schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(model_meta_schema())


# -- files ---------------------------------------------------------------------------------------


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(model_meta_schema())


def test_read_artifact_returns_what_write_artifact_wrote(tmp_path: Path) -> None:
    written = arrays()
    write_artifact(tmp_path / "a", meta(), written)
    artifact = read_artifact(tmp_path / "a")
    assert artifact.meta == meta()
    assert set(artifact.arrays) == set(written)
    for name, arr in written.items():
        assert artifact.arrays[name].dtype == arr.dtype
        np.testing.assert_array_equal(artifact.arrays[name], arr)
    row0 = written["track_neighbours"][0]
    np.testing.assert_array_equal(artifact.neighbours(100), row0[row0 != -1])


def test_written_meta_json_validates_against_the_schema(tmp_path: Path) -> None:
    write_artifact(tmp_path / "a", meta(), arrays())
    doc = orjson.loads((tmp_path / "a" / "meta.json").read_bytes())
    schema_validator().validate(doc)
    assert doc["arrays"]["track_neighbours"] == {"dtype": "int64", "shape": [6, 4]}


def test_loaded_arrays_are_read_only(tmp_path: Path) -> None:
    write_artifact(tmp_path / "a", meta(), arrays())
    artifact = read_artifact(tmp_path / "a")
    with pytest.raises(ValueError):
        artifact.arrays["track_ids"][0] = 7


def test_write_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "other").write_text("x")
    with pytest.raises(ArtifactError, match="not empty"):
        write_artifact(tmp_path / "a", meta(), arrays())


def _without(name: str) -> dict[str, np.ndarray]:
    out = arrays()
    del out[name]
    return out


BAD_ARRAYS = {
    "no track ids": _without("track_ids"),
    "int32 track ids": arrays() | {"track_ids": np.arange(6, dtype=np.int32)},
    "2-D track ids": arrays() | {"track_ids": np.arange(6, dtype=np.int64).reshape(3, 2)},
    "duplicate track ids": arrays() | {"track_ids": np.array([1, 1, 2, 3, 4, 5], np.int64)},
    "negative track id": arrays() | {"track_ids": np.array([-5, 1, 2, 3, 4, 5], np.int64)},
    "neighbours rows": arrays() | {"track_neighbours": np.zeros((5, 4), np.int64)},
    "neighbours below padding": arrays() | {"track_neighbours": np.full((6, 4), -2, np.int64)},
    "float neighbours": arrays() | {"track_neighbours": np.zeros((6, 4), np.float32)},
    "user_top without user ids": _without("user_ids"),
    "float64 embedding": arrays() | {"track_emb": np.zeros((6, 2))},
    "embedding widths": arrays() | {"track_emb": np.zeros((6, 3), np.float32)},
    "nan embedding": arrays() | {"context_emb": np.full((6, 2), np.nan, np.float32)},
    "bias rows": arrays() | {"track_bias": np.zeros(7, np.float32)},
    "user bias rows": arrays() | {"user_bias": np.zeros(4, np.float32)},
    "float64 user bias": arrays() | {"user_bias": np.zeros(3)},
    "object dtype": arrays() | {"extra": np.array([{"a": 1}], dtype=object)},
    "string dtype": arrays() | {"extra": np.array(["a"])},
    "big-endian": arrays() | {"extra": np.zeros(2, ">i8")},
    "array name": arrays() | {"../evil": np.zeros(2)},
    "not an array": arrays() | {"extra": [1, 2, 3]},
}


@pytest.mark.parametrize("bad", BAD_ARRAYS.values(), ids=BAD_ARRAYS.keys())
def test_invalid_arrays_are_refused_with_an_artifact_error_before_writing(
    tmp_path: Path, bad: dict[str, Any]
) -> None:
    with pytest.raises(ArtifactError):
        write_artifact(tmp_path / "a", meta(), bad)
    assert not (tmp_path / "a").exists()


BAD_META = {
    "model name": {"name": "Not Snake"},
    "version 0": {"version": 0},
    "negative created": {"created_ms": -1},
    "parent 0": {"parent": 0},
    "nan metric": {"metrics": {"hr@10": float("nan")}},
    "text metric": {"metrics": {"hr@10": "high"}},
    "window backwards": {"window": DataWindow(first_ms=5, last_ms=1, examples=0)},
    "negative examples": {"window": DataWindow(first_ms=0, last_ms=1, examples=-1)},
    "params not JSON": {"params": {"f": object()}},
}


@pytest.mark.parametrize("changes", BAD_META.values(), ids=BAD_META.keys())
def test_invalid_meta_is_refused_with_an_artifact_error(
    tmp_path: Path, changes: dict[str, Any]
) -> None:
    with pytest.raises(ArtifactError):
        write_artifact(tmp_path / "a", meta(**changes), arrays())


SCHEMA_REJECTS = {
    "model name": ("name", "Not Snake"),
    "version 0": ("version", 0),
    "parent 0": ("parent", 0),
    "no track_ids": ("arrays", {"user_ids": {"dtype": "int64", "shape": [3]}}),
    "object dtype": ("arrays", {"track_ids": {"dtype": "object", "shape": [3]}}),
    "extra key": ("owner", "me"),
    "schema version": ("schema_version", 2),
    "text metric": ("metrics", {"hr@10": "high"}),
}


@pytest.mark.parametrize(("field", "value"), SCHEMA_REJECTS.values(), ids=SCHEMA_REJECTS.keys())
def test_schema_and_reader_reject_the_same_meta_documents(
    tmp_path: Path, field: str, value: Any
) -> None:
    write_artifact(tmp_path / "a", meta(), arrays())
    path = tmp_path / "a" / "meta.json"
    doc = orjson.loads(path.read_bytes()) | {field: value}
    with pytest.raises(jsonschema.ValidationError):
        schema_validator().validate(doc)
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(ArtifactError, match="meta.json"):
        read_artifact(tmp_path / "a")


def _corrupt_missing_meta(d: Path) -> None:
    (d / "meta.json").unlink()


def _corrupt_meta_not_json(d: Path) -> None:
    (d / "meta.json").write_text("{not json")


def _corrupt_missing_array(d: Path) -> None:
    (d / "user_top.npy").unlink()


def _corrupt_truncated_array(d: Path) -> None:
    path = d / "track_neighbours.npy"
    path.write_bytes(path.read_bytes()[:-20])


def _corrupt_dtype_differs_from_manifest(d: Path) -> None:
    np.save(d / "track_bias.npy", np.zeros(6, np.float64))


def _corrupt_pickled_array(d: Path) -> None:
    np.save(d / "contextual_weights.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)


def _corrupt_contract_broken_in_files(d: Path) -> None:
    # Matches its manifest entry, but the ids are no longer unique.
    np.save(d / "track_ids.npy", np.zeros(6, np.int64))


CORRUPTIONS = [
    _corrupt_missing_meta,
    _corrupt_meta_not_json,
    _corrupt_missing_array,
    _corrupt_truncated_array,
    _corrupt_dtype_differs_from_manifest,
    _corrupt_pickled_array,
    _corrupt_contract_broken_in_files,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__[len("_corrupt_") :])
def test_a_damaged_artifact_fails_to_load_with_an_artifact_error(
    tmp_path: Path, corrupt: Any
) -> None:
    write_artifact(tmp_path / "a", meta(), arrays())
    corrupt(tmp_path / "a")
    with pytest.raises(ArtifactError):
        read_artifact(tmp_path / "a")


# -- announcements -------------------------------------------------------------------------------


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


# -- the store -----------------------------------------------------------------------------------


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
        await store.publish(meta(), _without("track_ids"))
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
