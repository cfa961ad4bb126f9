"""``python -m services.stream``: one stream worker (run several to share the partitions)."""

from __future__ import annotations

import faust

from botify.kafka import ensure_topics
from botify.settings import Settings
from services.stream.app import create_app


def main() -> None:
    settings = Settings()
    ensure_topics(settings.kafka)
    app = create_app(settings)
    faust.Worker(app, loglevel="WARN", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
