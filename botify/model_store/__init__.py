"""Versioned model artifacts: files on disk, a version pointer in Redis, announcements on Kafka.

- ``artifact_files``: the ``meta.json`` schema, the array contract, reading and writing a
  version's directory;
- ``pointers``: version numbers and the pointer readers follow (Redis, Lua);
- ``announcements``: "a pointer moved" on Kafka, sent and followed;
- ``store``: ``ModelStore``, which publishes, loads and prunes versions with the three.
"""

from botify.model_store.announcements import (
    ANNOUNCE_PARTITIONS,
    Announcement,
    AnnouncementFeed,
    ModelAnnouncer,
    announcement_from_bytes,
)
from botify.model_store.artifact_files import (
    META_FILE,
    check_model_name,
    meta_from_document,
    model_meta_schema,
    read_artifact,
    read_meta,
    validate_arrays,
    write_artifact,
)
from botify.model_store.pointers import (
    MemoryVersionPointers,
    RedisVersionPointers,
    VersionPointers,
)
from botify.model_store.store import ModelStore

__all__ = [
    "ANNOUNCE_PARTITIONS",
    "META_FILE",
    "Announcement",
    "AnnouncementFeed",
    "MemoryVersionPointers",
    "ModelAnnouncer",
    "ModelStore",
    "RedisVersionPointers",
    "VersionPointers",
    "announcement_from_bytes",
    "check_model_name",
    "meta_from_document",
    "model_meta_schema",
    "read_artifact",
    "read_meta",
    "validate_arrays",
    "write_artifact",
]
