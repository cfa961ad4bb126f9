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


def test_the_spec_documents_every_status_and_the_real_media_types(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for route in ("/next/{user}", "/last/{user}"):
        documented = set(paths[route]["post"]["responses"])
        assert documented >= {"200", "400", "404", "408", "413", "422", "503"}, route
        assert "422" in documented
    assert set(paths["/track/{track}"]["get"]["responses"]) >= {"200", "404", "422"}
    assert set(paths["/health"]["get"]["responses"]) == {"200", "503"}
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == [client.get("/metrics").headers["content-type"]]
    assert list(metrics)[0].startswith("text/plain")
    # The path ids as the API parses them: integers in range.
    (user,) = paths["/next/{user}"]["post"]["parameters"]
    assert user["schema"] == {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
    # Errors in the one shape of services/api/errors.py.
    error = paths["/next/{user}"]["post"]["responses"]["503"]["content"]["application/json"]
    assert error["schema"]["$ref"].endswith("/ErrorResponse")
