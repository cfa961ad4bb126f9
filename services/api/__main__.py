"""``python -m services.api``: one API process on the configured host and port."""

from __future__ import annotations

import logging

import uvicorn

from botify.settings import Settings
from services.api.app import create_app


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
