"""Artifact files: the meta.json schema, the array contract, writing and reading a version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest

from botify.artifacts import DataWindow
from botify.errors import ArtifactError
from botify.model_store import (
    model_meta_schema,
    read_artifact,
    write_artifact,
)
from tests.unit.model_store.samples import arrays, meta, without


def schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(model_meta_schema())


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


BAD_ARRAYS = {
    "no track ids": without("track_ids"),
    "int32 track ids": arrays() | {"track_ids": np.arange(6, dtype=np.int32)},
    "2-D track ids": arrays() | {"track_ids": np.arange(6, dtype=np.int64).reshape(3, 2)},
    "duplicate track ids": arrays() | {"track_ids": np.array([1, 1, 2, 3, 4, 5], np.int64)},
    "negative track id": arrays() | {"track_ids": np.array([-5, 1, 2, 3, 4, 5], np.int64)},
    "neighbours rows": arrays() | {"track_neighbours": np.zeros((5, 4), np.int64)},
    "neighbours below padding": arrays() | {"track_neighbours": np.full((6, 4), -2, np.int64)},
    "float neighbours": arrays() | {"track_neighbours": np.zeros((6, 4), np.float32)},
    "user_top without user ids": without("user_ids"),
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
