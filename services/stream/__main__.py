"""``python -m services.stream``: one stream worker (run several to share the partitions)."""

from __future__ import annotations

import sys

import faust

from botify.errors import BotifyError
from botify.kafka import ensure_topics
from botify.settings import Settings
from services.stream.app import create_app


def main() -> None:
    settings = Settings()
    try:
        ensure_topics(settings.kafka)
    except BotifyError as exc:  # no broker: one line, not a traceback
        sys.exit(f"botify stream: {exc}")
    app = create_app(settings)
    worker = faust.Worker(app, loglevel="WARN", quiet=True)
    # faust's terminal spinner would lower the root logger to DEBUG (so every debug record
    # of faust and aiokafka is built, only to turn it) and write escape codes to our logs.
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
