"""``ModelStore``: publishes, loads and prunes model versions.

A version is published in this order, so no reader ever sees half of one:

1. the version number is allocated with INCR on ``keys.model_sequence``;
2. the files are written and fsynced in ``<models>/<model>/.tmp-*`` and the directory is
   renamed to its final name ``<models>/<model>/<version:08d>/`` (atomic on one file system);
3. the pointer ``keys.model_current`` is set to the version, only if it is newer than the one
   there (two racing publishers never move it backwards) and, for a trainer, only from the
   version its candidate was judged against (``replacing``);
4. an announcement is sent (``ModelAnnouncer``), best effort;
5. old versions are pruned, keeping the newest ``keep_versions`` and always the current one
   (the pointer is read again once they are in the trash: a version a rollback made current
   meanwhile is put back; a rollback checks the files once the pointer moved, and moves it
   back if they are gone).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from botify.artifacts import ModelArtifact, ModelMeta
from botify.errors import ArtifactError, PointerMovedError
from botify.files import fsync_dir
from botify.model_store.announcements import Announcement, Announcer
from botify.model_store.artifact_files import (
    check_model_name,
    read_artifact,
    read_meta,
    validated_document,
    write_files,
)
from botify.model_store.pointers import (
    ANY,
    ROLLBACK,
    Expected,
    MemoryVersionPointers,
    PointerMove,
    RedisVersionPointers,
    VersionPointers,
)
from botify.settings import Settings

logger = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"^[0-9]{8,}$")
_MODEL_DIR = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TMP = ".tmp-"
_TRASH = ".trash-"


class ModelStore:
    """Publishes and loads model versions under ``models_dir``; pointers in Redis (or in
    memory when ``redis_client`` is None: one process only)."""

    def __init__(
        self,
        models_dir: Path,
        redis_client: aioredis.Redis | None,
        *,
        keep_versions: int = 5,
        announcer: Announcer | None = None,
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
        announcer: Announcer | None = None,
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

    def published(self, name: str) -> list[ModelMeta]:
        """The metas of the versions still on disk, oldest first (unreadable ones logged and
        left out)."""
        out = []
        for version in self.versions(name):
            try:
                out.append(read_meta(self.path(name, version)))
            except ArtifactError as exc:
                logger.warning("model %s v%d: %s", name, version, exc)
        return out

    def models(self) -> list[str]:
        """The models with a directory in the store, by name."""
        try:
            entries = list(os.scandir(self.models_dir))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if e.is_dir() and _MODEL_DIR.match(e.name))

    async def promotions(self, name: str) -> list[PointerMove]:
        """Every move of ``name``'s pointer, promotions and rollbacks, oldest first."""
        return await self._pointers.history(check_model_name(name))

    async def rollback(self, name: str, version: int | None = None) -> PointerMove:
        """Point ``name`` at ``version`` (default: ``served_before`` the current one), after
        loading it in full; record the move and announce it.
        ``ArtifactError`` says why not: an unknown model, a version never published or
        pruned, an artifact that does not load, or a pointer that moved meanwhile."""
        name = check_model_name(name)
        current = await self._pointers.current(name)
        # Each refusal names the directory: a wrong one is the likeliest mistake of a caller.
        where = self.models_dir / name
        on_disk = self.versions(name)
        kept = ", ".join(f"v{v}" for v in on_disk) or "none"
        if current is None:
            known = ", ".join(self.models()) or "none"
            raise ArtifactError(
                f"model {name!r} has no published version (models in {self.models_dir}: {known})"
            )
        if version is None:
            history = await self._pointers.history(name)
            version = served_before(history, current, on_disk)
            if version is None:
                raise ArtifactError(
                    f"{name} has no version before v{current} to roll back to (in {where}: {kept}"
                    "; versions rolled back from are never picked: name one to take it)"
                )
        elif version == current:
            raise ArtifactError(f"{name} v{version} is already the current version")
        elif version not in on_disk:
            if version < 1 or version > await self._pointers.sequence(name):
                raise ArtifactError(f"{name} v{version} was never published (in {where}: {kept})")
            raise ArtifactError(
                f"{name} v{version} is not in {where}: pruned, or its publication failed "
                f"(the store keeps {self.keep_versions}; there: {kept})"
            )
        # Every reader is about to load it: a version that does not load is refused here.
        artifact = await asyncio.to_thread(self.load, name, version)
        at_ms = _now_ms()
        before = await self._pointers.rollback(name, version, current, at_ms)
        if before != current:
            raise ArtifactError(
                f"{name}'s pointer moved from v{current} to v{before} meanwhile: nothing changed"
            )
        if not self.path(name, version).is_dir():
            # A publisher's prune took it after it loaded here: the pointer goes back (unless
            # it moved again), so it never stays on a deleted version.
            back = await self._pointers.rollback(name, current, version, _now_ms())
            where_now = f"back at v{current}" if back == version else f"at v{back}"
            raise ArtifactError(
                f"{name} v{version} was pruned while rolling back to it: the pointer is {where_now}"
            )
        if self._announcer is not None:
            path = str(self.path(name, version).resolve())
            announcement = Announcement(name, version, path, artifact.meta.created_ms, True)
            await asyncio.to_thread(self._announcer.announce, announcement)
        return PointerMove(ROLLBACK, version, current, at_ms)

    async def publish(
        self,
        meta: ModelMeta,
        arrays: Mapping[str, np.ndarray],
        *,
        replacing: Expected = ANY,
    ) -> ModelMeta:
        """Publish a new version of ``meta.name`` and return its meta. ``meta.version`` is
        ignored: the store allocates the number. ``ArtifactError`` if meta or arrays are
        invalid, before a number is taken. With ``replacing`` (the version the new one was
        judged against; None: none), the pointer moves only from that version: otherwise
        the files stay on disk (until pruned), the pointer stays, and ``PointerMovedError``
        says where it is."""
        name = check_model_name(meta.name)
        # Validated with a placeholder version, so a bad artifact takes no number.
        doc = await asyncio.to_thread(validated_document, replace(meta, version=1), arrays)
        floor = max(self.versions(name), default=0)
        version = await self._pointers.allocate(name, floor)
        meta = replace(meta, version=version)
        doc["version"] = version
        path = await asyncio.to_thread(self._write_version, meta, doc, arrays)
        announcement = Announcement(name, version, str(path.resolve()), meta.created_ms)
        moved = await self._pointers.flip(name, version, _now_ms(), replacing)
        if moved:
            if self._announcer is not None:
                await asyncio.to_thread(self._announcer.announce, announcement)
        elif replacing == ANY:
            logger.warning("%s v%d was published after a newer version: not current", name, version)
        # The version is published once the pointer moved: whatever fails from here on is
        # clean-up for next time, not a failed publication.
        current = None
        try:
            current = await self._pointers.current(name)
            await self._prune_following(name, current)
        except Exception as exc:
            logger.warning("pruning %s failed: %r", name, exc)
        if not moved and replacing != ANY:
            expected = "none" if replacing is None else f"v{replacing}"
            now = "none" if current is None else f"v{current}"
            raise PointerMovedError(
                f"{name} v{version} was judged against {expected}, but the pointer names {now}:"
                f" not made current (its files stay until pruned)"
            )
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
            write_files(tmp, doc, arrays)
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
        trashed = self._trash_old(name, current)
        self._empty_trash(name, current)
        return sorted(trashed)

    async def _prune_following(self, name: str, current: int | None) -> list[int]:
        """``prune``, but a version a rollback made current meanwhile is put back before it
        is deleted (the rollback checks its files once the pointer moved: between the two,
        the pointer never stays on a deleted version)."""
        trashed = await asyncio.to_thread(self._trash_old, name, current)
        now = await self._pointers.current(name)
        if now is not None and now in trashed:
            logger.warning("%s v%d became current while being pruned: kept", name, now)
            os.rename(trashed.pop(now), self.path(name, now))
        await asyncio.to_thread(self._empty_trash, name, current if now is None else now)
        return sorted(trashed)

    def _trash_old(self, name: str, current: int | None) -> dict[int, Path]:
        """Move the versions ``prune`` deletes to trash directories, by version."""
        model_dir = self.models_dir / check_model_name(name)
        versions = self.versions(name)
        keep = set(self._kept(versions, current))
        trashed = {}
        for version in versions:
            if version in keep:
                continue
            # Renamed first, so a reader sees the whole version or none of it.
            trash = model_dir / f"{_TRASH}{version:08d}-{uuid.uuid4().hex[:8]}"
            os.rename(self.path(name, version), trash)
            trashed[version] = trash
        return trashed

    def _kept(self, versions: list[int], current: int | None) -> set[int]:
        keep = set(versions[-self.keep_versions :])
        if current is not None:
            keep.add(current)
        return keep

    def _empty_trash(self, name: str, current: int | None) -> None:
        """Delete the trash, and temporary directories of publishers that died."""
        model_dir = self.models_dir / check_model_name(name)
        keep = self._kept(self.versions(name), current)
        oldest_kept = min(keep, default=0)
        for entry in os.scandir(model_dir) if model_dir.exists() else ():
            if entry.name.startswith(_TRASH) or (
                # A temporary directory older than every kept version belongs to a publisher
                # that died: one still running could not make its version current anyway.
                entry.name.startswith(_TMP) and _tmp_version(entry.name) < oldest_kept
            ):
                shutil.rmtree(entry.path, ignore_errors=True)


def served_before(history: list[PointerMove], current: int, on_disk: list[int]) -> int | None:
    """The version served before ``current``, by the pointer's ``history``: the ``previous``
    of the promotion that made it current (a rollback to it returns to that state, so the
    one before that promotion is looked for). A version some rollback moved away from is
    never picked, nor one no longer on disk: the search goes on to the version served
    before it. Without a trace of ``current`` in the history (none kept, or trimmed), the
    newest version on disk below it that no rollback moved away from. None: nothing."""
    rolled_away = {m.previous for m in history if m.action == ROLLBACK}
    available = set(on_disk) - rolled_away - {current}
    target, end = current, len(history)
    while True:
        index = next((i for i in range(end - 1, -1, -1) if history[i].version == target), None)
        if index is None:
            break
        move, end = history[index], index
        if move.action == ROLLBACK:
            continue  # it went back to ``target``: how did ``target`` become current before?
        if move.previous is None:
            return None
        if move.previous in available:
            return move.previous
        target = move.previous
    older = [v for v in on_disk if v < current and v in available]
    return older[-1] if older else None


def _tmp_version(dirname: str) -> int:
    digits = dirname[len(_TMP) :].split("-", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
