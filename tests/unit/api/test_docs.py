"""API docs that need no internet: every asset /docs and /redoc load is served by the API."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_assets_the_api_serves(client: TestClient, page: str) -> None:
    resp = client.get(page)
    assert resp.status_code == 200
    html = resp.text
    # No CDN (or any other host): every src/href is a path on this server.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), html
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        got = client.get(asset)
        assert got.status_code == 200, asset
        assert len(got.content) > 1000, asset
    assert "/openapi.json" in html
