"""``python -m services.stream``: one stream worker (run several to share the partitions)."""

from __future__ import annotations

import asyncio
import logging
import sys

from botify.errors import BotifyError
from botify.kafka import ensure_topics
from botify.settings import Settings
from services.stream.app import serve


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    try:
        ensure_topics(settings.kafka)
    except BotifyError as exc:  # no broker: one line, not a traceback
        sys.exit(f"botify stream: {exc}")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
