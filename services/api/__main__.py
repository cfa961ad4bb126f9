"""``python -m services.api``: one API process on the configured host and port."""

from __future__ import annotations

import logging
import sys

import uvicorn

from botify.errors import BotifyError
from botify.settings import Settings
from services.api.app import create_app
from services.api.server import server_config


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        app = create_app(settings)
    except BotifyError as exc:  # a typo'd setting, a broken plugin: one line, no traceback
        sys.exit(f"botify api: {exc}")
    uvicorn.Server(server_config(app, settings.api)).run()


if __name__ == "__main__":
    main()
