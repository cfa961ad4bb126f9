"""Model artifacts on disk: the ``meta.json`` schema, the array contract, and the files.

A version's directory holds ``meta.json`` (``ModelMeta`` plus a manifest of its arrays,
validated against ``botify/schemas/model_meta.v1.json``) and one ``<array>.npy`` per array,
written with ``allow_pickle=False`` and read mapped (``botify.artifacts`` says what each
standard array holds). Arrays are checked both ways: before a version is written and when
it is read back.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson

from botify.artifacts import (
    CONTEXT_EMB,
    PAD,
    TRACK_BIAS,
    TRACK_EMB,
    TRACK_IDS,
    TRACK_NEIGHBOURS,
    USER_BIAS,
    USER_EMB,
    USER_IDS,
    USER_TOP,
    DataWindow,
    ModelArtifact,
    ModelMeta,
)
from botify.errors import ArtifactError
from botify.files import fsync_dir

# Shipped inside the package: an installed botify finds it without a source checkout.
MODEL_META_SCHEMA = resources.files("botify") / "schemas" / "model_meta.v1.json"
META_FILE = "meta.json"
SCHEMA_VERSION = 1
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DTYPES = frozenset(
    "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64".split()
)

# The standard arrays: (ndim, dtype, the id array whose rows they follow).
_STANDARD: dict[str, tuple[int, str, str | None]] = {
    TRACK_IDS: (1, "int64", None),
    USER_IDS: (1, "int64", None),
    TRACK_NEIGHBOURS: (2, "int64", TRACK_IDS),
    USER_TOP: (2, "int64", USER_IDS),
    CONTEXT_EMB: (2, "float32", TRACK_IDS),
    TRACK_EMB: (2, "float32", TRACK_IDS),
    USER_EMB: (2, "float32", USER_IDS),
    TRACK_BIAS: (1, "float32", TRACK_IDS),
    USER_BIAS: (1, "float32", USER_IDS),
}
_EMBEDDINGS = (CONTEXT_EMB, TRACK_EMB, USER_EMB)


# -- schema ------------------------------------------------------------------------------------


@cache
def model_meta_schema() -> dict[str, Any]:
    return json.loads(MODEL_META_SCHEMA.read_text())  # type: ignore[no-any-return]


@cache
def _meta_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(model_meta_schema())


def schema_error(validator: jsonschema.Draft202012Validator, doc: object) -> str | None:
    """The most relevant way ``doc`` breaks ``validator``'s schema, or None if it is valid."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path) or "document"
    return f"{where}: {error.message}"


def check_model_name(name: str) -> str:
    """``name`` if it can name a model (it becomes a directory and a Redis key), else raise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ArtifactError(f"invalid model name {name!r}: use [a-z][a-z0-9_]*, 64 at most")
    return name


# -- arrays ------------------------------------------------------------------------------------


def validate_arrays(arrays: Mapping[str, np.ndarray]) -> None:
    """Raise ``ArtifactError`` unless ``arrays`` follow the artifact contract: ``track_ids``
    present, standard arrays of the right dtype, rank and row count, ids unique, embeddings
    finite and of one width. Other arrays may be any numeric dtype."""
    for name, arr in arrays.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ArtifactError(f"invalid array name {name!r}: use [a-z][a-z0-9_]*")
        if not isinstance(arr, np.ndarray):
            raise ArtifactError(f"array {name}: expected a numpy array, got {type(arr).__name__}")
        if arr.dtype.name not in _DTYPES or not arr.dtype.isnative:
            raise ArtifactError(f"array {name}: unsupported dtype {arr.dtype.str}")
    if TRACK_IDS not in arrays:
        raise ArtifactError(f"an artifact needs {TRACK_IDS}")
    for name, (ndim, dtype, rows_of) in _STANDARD.items():
        standard = arrays.get(name)
        if standard is None:
            continue
        arr = standard
        if arr.ndim != ndim or arr.dtype.name != dtype:
            raise ArtifactError(
                f"array {name}: expected {ndim}-D {dtype}, got {arr.ndim}-D {arr.dtype.name}"
            )
        if rows_of is not None:
            ids = arrays.get(rows_of)
            if ids is None:
                raise ArtifactError(f"array {name} needs {rows_of} for its rows")
            if arr.shape[0] != ids.shape[0]:
                raise ArtifactError(
                    f"array {name}: {arr.shape[0]} rows, but {rows_of} has {ids.shape[0]}"
                )
        if arr.size and dtype == "float32" and not np.isfinite(arr).all():
            raise ArtifactError(f"array {name}: has NaN or infinite values")
    for name in (TRACK_IDS, USER_IDS):
        ids = arrays.get(name)
        if ids is not None and ids.size:
            if ids.min() < 0:
                raise ArtifactError(f"array {name}: ids must be >= 0")
            # sort releases the GIL, np.unique does not: a load must not stall requests.
            ordered = np.sort(ids)
            if (ordered[1:] == ordered[:-1]).any():
                raise ArtifactError(f"array {name}: ids must be unique")
    for name in (TRACK_NEIGHBOURS, USER_TOP):
        table = arrays.get(name)
        if table is not None and table.size and table.min() < PAD:
            raise ArtifactError(f"array {name}: entries are track ids or {PAD} (padding)")
    widths = {name: arrays[name].shape[1] for name in _EMBEDDINGS if name in arrays}
    if len(set(widths.values())) > 1:
        raise ArtifactError(f"embeddings must share one width, got {widths}")


# -- meta.json ---------------------------------------------------------------------------------


def _meta_document(meta: ModelMeta, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    for key, value in meta.metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ArtifactError(f"metrics.{key}: not a number: {value!r}") from None
        if not np.isfinite(number):
            raise ArtifactError(f"metrics.{key}: {number} (JSON has no NaN: leave it out)")
        metrics[str(key)] = number
    try:
        # A round trip turns numpy scalars and tuples into plain JSON values.
        params = orjson.loads(orjson.dumps(dict(meta.params), option=orjson.OPT_SERIALIZE_NUMPY))
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise ArtifactError(f"params: not JSON-serialisable: {exc}") from None
    doc = {
        "schema_version": SCHEMA_VERSION,
        "name": meta.name,
        "version": meta.version,
        "parent": meta.parent,
        "created_ms": meta.created_ms,
        "window": asdict(meta.window),
        "metrics": metrics,
        "params": params,
        "arrays": {n: {"dtype": a.dtype.name, "shape": list(a.shape)} for n, a in arrays.items()},
    }
    problem = schema_error(_meta_validator(), doc)
    if problem is not None:
        raise ArtifactError(f"model meta {meta.name!r}: {problem}")
    if meta.window.first_ms > meta.window.last_ms:
        raise ArtifactError(f"model meta {meta.name!r}: window.first_ms is after window.last_ms")
    return doc


def meta_from_document(doc: object) -> tuple[ModelMeta, dict[str, dict[str, Any]]]:
    """A validated ``meta.json`` document as ``ModelMeta`` and its arrays manifest."""
    problem = schema_error(_meta_validator(), doc)
    if problem is not None:
        raise ArtifactError(f"meta.json: {problem}")
    assert isinstance(doc, dict)  # the schema says so
    meta = ModelMeta(
        name=doc["name"],
        version=doc["version"],
        parent=doc["parent"],
        created_ms=doc["created_ms"],
        window=DataWindow(**doc["window"]),
        metrics={k: float(v) for k, v in doc["metrics"].items()},
        params=doc["params"],
    )
    return meta, doc["arrays"]


def read_meta(directory: Path) -> ModelMeta:
    """The ``ModelMeta`` of the artifact in ``directory``, without loading its arrays."""
    return _read_meta(Path(directory))[0]


def _read_meta(directory: Path) -> tuple[ModelMeta, dict[str, dict[str, Any]]]:
    path = directory / META_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: not an artifact directory") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not JSON: {exc}") from None
    try:
        return meta_from_document(doc)
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


# -- files -------------------------------------------------------------------------------------


def write_artifact(directory: Path, meta: ModelMeta, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``meta.json`` and one ``.npy`` per array into ``directory`` (created if missing,
    refused if not empty), arrays first and meta last, every file fsynced. ``ArtifactError``
    says what is invalid before anything is written."""
    write_files(Path(directory), validated_document(meta, arrays), arrays)


def validated_document(meta: ModelMeta, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    validate_arrays(arrays)
    return _meta_document(meta, arrays)


def write_files(directory: Path, doc: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise ArtifactError(f"{directory} is not empty: an artifact needs a directory of its own")
    for name, arr in arrays.items():
        with open(directory / f"{name}.npy", "wb") as f:
            np.save(f, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
    with open(directory / META_FILE, "wb") as f:
        f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(directory)


def read_artifact(directory: Path) -> ModelArtifact:
    """Load the artifact in ``directory``: meta validated against the schema, each array
    checked against its manifest entry and the artifact contract. Arrays are read-only."""
    directory = Path(directory)
    meta, manifest = _read_meta(directory)
    arrays: dict[str, np.ndarray] = {}
    for name, spec in manifest.items():
        path = directory / f"{name}.npy"
        try:
            # Mapped, not read: a published version's files never change, and a reload then
            # costs the serving process page faults spread over requests instead of one
            # long copy while it serves. (A pruned file stays readable while mapped.)
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise ArtifactError(f"{path} is missing") from None
        except (OSError, ValueError, EOFError) as exc:
            raise ArtifactError(f"{path}: unreadable: {exc}") from None
        if not isinstance(arr, np.ndarray):
            raise ArtifactError(f"{path}: not a single array")
        if arr.dtype.name != spec["dtype"] or list(arr.shape) != spec["shape"]:
            raise ArtifactError(
                f"{path}: {arr.dtype.name} {list(arr.shape)}, but meta.json says "
                f"{spec['dtype']} {spec['shape']}"
            )
        # Shared by every request thread of the process: nobody may write into it.
        arr.setflags(write=False)
        arrays[name] = arr
    try:
        validate_arrays(arrays)
    except ArtifactError as exc:
        raise ArtifactError(f"{directory}: {exc}") from None
    return ModelArtifact(meta, arrays)
