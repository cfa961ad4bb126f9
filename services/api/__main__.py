"""``python -m services.api``: one API process on the configured host and port."""

from __future__ import annotations

import logging

import uvicorn

from botify.settings import Settings
from services.api.app import create_app
from services.api.server import server_config


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    uvicorn.Server(server_config(create_app(settings), settings.api)).run()


if __name__ == "__main__":
    main()
