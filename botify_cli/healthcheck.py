"""``python -m botify_cli.healthcheck``: container health checks, exit 0 when healthy.

- ``http [URL]``: the URL answers 200 (default: this container's API ``/health``).
  Stream workers and the trainer serve ``/health`` on their metrics ports (9101, 9102).
- ``backends``: Redis and the broker of this process's settings answer.
"""

from __future__ import annotations

import sys

import httpx
import redis

from botify.kafka import CLI, broker_reachable
from botify.settings import Settings
from botify.storage.connection import sync_redis

TIMEOUT_S = 3.0


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=TIMEOUT_S).status_code == 200
    except httpx.HTTPError:
        return False


def backends_ok(settings: Settings) -> bool:
    try:
        client = sync_redis(settings.redis, socket_timeout=TIMEOUT_S)
        client.ping()
    except redis.RedisError:
        return False
    return broker_reachable(settings.kafka, TIMEOUT_S, service=CLI)


def main(argv: list[str]) -> int:
    settings = Settings()
    what = argv[0] if argv else "http"
    if what == "http":
        url = argv[1] if len(argv) > 1 else f"http://127.0.0.1:{settings.api.port}/health"
        return 0 if http_ok(url) else 1
    if what == "backends":
        return 0 if backends_ok(settings) else 1
    print(f"usage: python -m botify_cli.healthcheck [http [URL] | backends], not {what!r}")  # noqa: T201
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
