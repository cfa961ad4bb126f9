"""Versioned model artifacts: files on disk, a version pointer in Redis, announcements on Kafka.

Layout: ``<models>/<model>/<version:08d>/`` holds ``meta.json`` and one ``<array>.npy`` per
array (see ``botify.artifacts``). A version is published in this order, so no reader ever sees
half of one:

1. the version number is allocated with INCR on ``keys.model_sequence``;
2. the files are written and fsynced in ``<models>/<model>/.tmp-*`` and the directory is
   renamed to its final name (atomic on one file system);
3. the pointer ``keys.model_current`` is set to the version, only if it is newer than the one
   there (a Lua script: two racing publishers never move it backwards);
4. an announcement is sent (``ModelAnnouncer``), best effort: the pointer is the source of
   truth, announcements only spare readers the wait for their next poll;
5. old versions are pruned, keeping the newest ``keep_versions`` and always the current one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import jsonschema
import numpy as np
import orjson
import redis.asyncio as aioredis
from confluent_kafka import Consumer, KafkaException, TopicPartition

from botify import keys
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
from botify.errors import ArtifactError, BackendUnavailableError, BotifyError, InvalidEventError
from botify.files import fsync_dir
from botify.kafka import ListenPublisher, create_topics
from botify.settings import KafkaSettings, Settings

logger = logging.getLogger(__name__)

# Shipped inside the package: an installed botify finds it without a source checkout.
MODEL_META_SCHEMA = resources.files("botify") / "schemas" / "model_meta.v1.json"
META_FILE = "meta.json"
SCHEMA_VERSION = 1
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VERSION_DIR = re.compile(r"^[0-9]{8,}$")
_TMP = ".tmp-"
_TRASH = ".trash-"
# One partition keeps every model's announcements in publish order; there are few of them.
ANNOUNCE_PARTITIONS = 1
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


@cache
def _announcement_validator() -> jsonschema.Draft202012Validator:
    defs = model_meta_schema()["$defs"]
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/announcement", "$defs": defs})


def _schema_error(validator: jsonschema.Draft202012Validator, doc: object) -> str | None:
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
        arr = arrays.get(name)
        if arr is None:
            continue
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
    problem = _schema_error(_meta_validator(), doc)
    if problem is not None:
        raise ArtifactError(f"model meta {meta.name!r}: {problem}")
    if meta.window.first_ms > meta.window.last_ms:
        raise ArtifactError(f"model meta {meta.name!r}: window.first_ms is after window.last_ms")
    return doc


def meta_from_document(doc: object) -> tuple[ModelMeta, dict[str, dict[str, Any]]]:
    """A validated ``meta.json`` document as ``ModelMeta`` and its arrays manifest."""
    problem = _schema_error(_meta_validator(), doc)
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
    _write_files(Path(directory), _validated_document(meta, arrays), arrays)


def _validated_document(meta: ModelMeta, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    validate_arrays(arrays)
    return _meta_document(meta, arrays)


def _write_files(directory: Path, doc: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
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


# -- announcements -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Announcement:
    """``model``'s pointer now names ``version``, whose files are at ``path``."""

    model: str
    version: int
    path: str
    created_ms: int

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self))


def announcement_from_bytes(raw: bytes | str | None) -> Announcement:
    """Decode and validate one announcement record; ``InvalidEventError`` says what is wrong."""
    if raw is None:
        raise InvalidEventError("model announcement: record has no value")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError(f"model announcement: not JSON: {exc}") from None
    problem = _schema_error(_announcement_validator(), doc)
    if problem is not None:
        raise InvalidEventError(f"model announcement: {problem}")
    return Announcement(**doc)


class ModelAnnouncer:
    """Sends ``Announcement``s, keyed by model name, waiting for the broker's ack."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._kafka = kafka
        self._topic = topic
        self._publisher = ListenPublisher(kafka)
        self._topic_ready = False

    def announce(self, announcement: Announcement) -> bool:
        """True once the broker has it. False (logged) if not: readers then find the version
        at their next poll of the pointer, so a failure here loses nothing."""
        try:
            if not self._topic_ready:
                create_topics(self._kafka, {self._topic: ANNOUNCE_PARTITIONS})
                self._topic_ready = True
            failed = self._publisher.stats.failed
            self._publisher.publish_raw(
                self._topic, announcement.model.encode(), announcement.to_bytes()
            )
            left = self._publisher.flush()
        except (BotifyError, KafkaException) as exc:
            logger.warning(
                "announcing %s v%d failed: %s", announcement.model, announcement.version, exc
            )
            return False
        if left or self._publisher.stats.failed != failed:
            logger.warning(
                "announcement of %s v%d was not delivered", announcement.model, announcement.version
            )
            return False
        return True

    def close(self) -> None:
        self._publisher.close()


class AnnouncementFeed:
    """Calls ``on_announcement`` from a background thread for every valid announcement.

    The consumer joins no group: it ``assign()``s every partition from offset 0. Starting at
    the end would need an offset lookup, which Tansu answers unreliably (tried here: "end"
    landed two records before the end); replaying from the start is cheap (one record per
    published version) and callers skip versions they already serve.
    Invalid records are counted and logged, never fatal; a lost broker is retried."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        on_announcement: Callable[[Announcement], None],
        poll_timeout_s: float = 0.5,
        retry_s: float = 2.0,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._on = on_announcement
        self._poll_timeout_s = poll_timeout_s
        self._retry_s = retry_s
        self.received = 0
        self.invalid = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-announcements", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _open(self) -> Consumer:
        create_topics(self._kafka, {self._topic: ANNOUNCE_PARTITIONS})
        consumer = Consumer(
            {
                **self._kafka.client_config(),
                # Required by the client, never joined: assign() takes no group.
                "group.id": f"botify-model-feed-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            topic = consumer.list_topics(self._topic, timeout=10).topics.get(self._topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise BackendUnavailableError(f"topic {self._topic} has no partitions yet")
            consumer.assign([TopicPartition(self._topic, p, 0) for p in topic.partitions])
        except BaseException:
            consumer.close()
            raise
        return consumer

    def _run(self) -> None:
        consumer: Consumer | None = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._open()
                msg = consumer.poll(self._poll_timeout_s)
            except Exception as exc:  # the thread must outlive any broker trouble
                logger.warning("model announcements unavailable (retrying): %s", exc)
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self._stop.wait(self._retry_s)
                continue
            if msg is None:
                continue
            if msg.error():
                # Transient (the client reconnects by itself); the poll loop is the safety net.
                logger.warning("model announcements: %s", msg.error())
                continue
            try:
                announcement = announcement_from_bytes(msg.value())
            except InvalidEventError as exc:
                self.invalid += 1
                logger.warning("skipping record at offset %d: %s", msg.offset(), exc)
                continue
            self.received += 1
            try:
                self._on(announcement)
            except Exception:
                logger.exception("handling %s failed", announcement)
        if consumer is not None:
            consumer.close()


# -- version pointers --------------------------------------------------------------------------

# KEYS: sequence, pointer. ARGV: the highest version on disk. INCR, but never below a version
# that exists: a flushed or restored Redis must not hand out a number already used.
_ALLOCATE = """
local floor = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if current > floor then floor = current end
local seq = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if seq < floor then redis.call('SET', KEYS[1], floor) end
return redis.call('INCR', KEYS[1])
"""

# KEYS: pointer, description. ARGV: version, description. Only ever moves forward.
_FLIP = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if current >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


class VersionPointers(Protocol):
    async def allocate(self, model: str, floor: int) -> int: ...

    async def flip(self, model: str, version: int, description: bytes) -> bool: ...

    async def current(self, model: str) -> int | None: ...


class RedisVersionPointers:
    """Sequences and pointers in Redis, shared by every trainer and API process."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._allocate = client.register_script(_ALLOCATE)
        self._flip = client.register_script(_FLIP)

    async def allocate(self, model: str, floor: int) -> int:
        keys_ = [keys.model_sequence(model), keys.model_current(model)]
        return int(await self._allocate(keys=keys_, args=[floor]))

    async def flip(self, model: str, version: int, description: bytes) -> bool:
        keys_ = [keys.model_current(model), keys.model_meta(model)]
        return bool(await self._flip(keys=keys_, args=[version, description]))

    async def current(self, model: str) -> int | None:
        raw = await self._redis.get(keys.model_current(model))
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise ArtifactError(
                f"{keys.model_current(model)} holds {raw!r}, not a version"
            ) from None


@dataclass
class MemoryVersionPointers:
    """The same in one process's memory: tests, and stacks without Redis."""

    sequences: dict[str, int] = field(default_factory=dict)
    pointers: dict[str, int] = field(default_factory=dict)
    descriptions: dict[str, bytes] = field(default_factory=dict)

    async def allocate(self, model: str, floor: int) -> int:
        seq = max(self.sequences.get(model, 0), floor, self.pointers.get(model, 0)) + 1
        self.sequences[model] = seq
        return seq

    async def flip(self, model: str, version: int, description: bytes) -> bool:
        if self.pointers.get(model, 0) >= version:
            return False
        self.pointers[model] = version
        self.descriptions[model] = description
        return True

    async def current(self, model: str) -> int | None:
        return self.pointers.get(model)


# -- the store ---------------------------------------------------------------------------------


class ModelStore:
    """Publishes and loads model versions under ``models_dir``; pointers in Redis (or in
    memory when ``redis_client`` is None: one process only)."""

    def __init__(
        self,
        models_dir: Path,
        redis_client: aioredis.Redis | None,
        *,
        keep_versions: int = 5,
        announcer: ModelAnnouncer | None = None,
    ) -> None:
        if keep_versions < 1:
            raise ArtifactError("keep_versions must be at least 1")
        self.models_dir = Path(models_dir)
        self.keep_versions = keep_versions
        self._announcer = announcer
        self._pointers: VersionPointers = (
            MemoryVersionPointers() if redis_client is None else RedisVersionPointers(redis_client)
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        redis_client: aioredis.Redis | None,
        announcer: ModelAnnouncer | None = None,
    ) -> ModelStore:
        return cls(
            settings.models.path(settings.run_dir),
            redis_client,
            keep_versions=settings.models.keep_versions,
            announcer=announcer,
        )

    def path(self, name: str, version: int) -> Path:
        """The directory of ``name``'s ``version`` (whether or not it exists)."""
        return self.models_dir / check_model_name(name) / f"{version:08d}"

    def versions(self, name: str) -> list[int]:
        """The complete versions of ``name`` on disk, oldest first."""
        directory = self.models_dir / check_model_name(name)
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return []
        return sorted(int(e.name) for e in entries if _VERSION_DIR.match(e.name) and e.is_dir())

    async def current(self, name: str) -> int | None:
        """The version readers should serve, or None if none was published."""
        return await self._pointers.current(check_model_name(name))

    def load(self, name: str, version: int) -> ModelArtifact:
        """Read one version from disk. Blocking: call it in a worker thread."""
        path = self.path(name, version)
        if not path.is_dir():
            raise ArtifactError(f"model {name} v{version} is not at {path} (pruned?)")
        artifact = read_artifact(path)
        if artifact.meta.name != name or artifact.meta.version != version:
            raise ArtifactError(
                f"{path} holds {artifact.meta.name} v{artifact.meta.version}, not {name} v{version}"
            )
        return artifact

    def history(self, name: str) -> list[ModelMeta]:
        """The metas of the versions still on disk, oldest first (unreadable ones logged and
        left out)."""
        out = []
        for version in self.versions(name):
            try:
                out.append(read_meta(self.path(name, version)))
            except ArtifactError as exc:
                logger.warning("model %s v%d: %s", name, version, exc)
        return out

    async def publish(self, meta: ModelMeta, arrays: Mapping[str, np.ndarray]) -> ModelMeta:
        """Publish a new version of ``meta.name`` and return its meta. ``meta.version`` is
        ignored: the store allocates the number. ``ArtifactError`` if meta or arrays are
        invalid, before a number is taken."""
        name = check_model_name(meta.name)
        # Validated with a placeholder version, so a bad artifact takes no number.
        doc = await asyncio.to_thread(_validated_document, replace(meta, version=1), arrays)
        floor = max(self.versions(name), default=0)
        version = await self._pointers.allocate(name, floor)
        meta = replace(meta, version=version)
        doc["version"] = version
        path = await asyncio.to_thread(self._write_version, meta, doc, arrays)
        announcement = Announcement(name, version, str(path.resolve()), meta.created_ms)
        if await self._pointers.flip(name, version, announcement.to_bytes()):
            if self._announcer is not None:
                await asyncio.to_thread(self._announcer.announce, announcement)
        else:
            logger.warning("%s v%d was published after a newer version: not current", name, version)
        # The version is published once the pointer moved: whatever fails from here on is
        # clean-up for next time, not a failed publication.
        try:
            current = await self._pointers.current(name)
            await asyncio.to_thread(self.prune, name, current)
        except Exception as exc:
            logger.warning("pruning %s failed: %r", name, exc)
        return meta

    def _write_version(
        self, meta: ModelMeta, doc: dict[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> Path:
        model_dir = self.models_dir / meta.name
        model_dir.mkdir(parents=True, exist_ok=True)
        final = self.path(meta.name, meta.version)
        tmp = model_dir / f"{_TMP}{meta.version:08d}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            _write_files(tmp, doc, arrays)
            if final.exists():
                raise ArtifactError(f"{final} already exists")
            os.rename(tmp, final)
            fsync_dir(model_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def prune(self, name: str, current: int | None) -> list[int]:
        """Delete all but the newest ``keep_versions`` versions and ``current``; return the
        versions deleted. Also clears what crashed publishers and prunes left behind."""
        model_dir = self.models_dir / check_model_name(name)
        versions = self.versions(name)
        keep = set(versions[-self.keep_versions :])
        if current is not None:
            keep.add(current)
        removed = []
        for version in versions:
            if version in keep:
                continue
            # Renamed first, so a reader sees the whole version or none of it.
            trash = model_dir / f"{_TRASH}{version:08d}-{uuid.uuid4().hex[:8]}"
            os.rename(self.path(name, version), trash)
            shutil.rmtree(trash)
            removed.append(version)
        oldest_kept = min(keep, default=0)
        for entry in os.scandir(model_dir) if model_dir.exists() else ():
            if entry.name.startswith(_TRASH) or (
                # A temporary directory older than every kept version belongs to a publisher
                # that died: one still running could not make its version current anyway.
                entry.name.startswith(_TMP) and _tmp_version(entry.name) < oldest_kept
            ):
                shutil.rmtree(entry.path, ignore_errors=True)
        return removed


def _tmp_version(dirname: str) -> int:
    digits = dirname[len(_TMP) :].split("-", 1)[0]
    return int(digits) if digits.isdigit() else 0
