"""The API's docs work on a hospital network without internet: /docs and /redoc load their
assets from the API itself, and need no token."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from suifang.core.api import create_app
from suifang.core.config import load_settings


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_everything_from_the_api_itself(
    page: str, tmp_path: Path
) -> None:
    app = create_app(settings=load_settings(data_dir=tmp_path / "var"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as client:
        response = await client.get(page)
        assert response.status_code == 200
        html = response.text
        assert not re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), html
        assets = re.findall(r"""(?:src|href)=["'](/[^"']+)["']""", html)
        assets += re.findall(r"""url: ['"](/[^"']+)['"]""", html)
        assert "/openapi.json" in html
        assert any(a.endswith(".js") for a in assets), assets
        for asset in assets:
            loaded = await client.get(asset)
            assert loaded.status_code == 200, asset
            assert len(loaded.content) > 100, asset


def test_the_spec_names_the_token_scheme_and_the_error_answers(tmp_path: Path) -> None:
    spec = create_app(settings=load_settings(data_dir=tmp_path / "var")).openapi()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: `suifang tokens create USERNAME`.",
    }
    public = {"/healthz", "/channels/{name}/inbound"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "503" in responses, (method, path)
            if path in public:
                assert "security" not in operation
                continue
            assert operation["security"] == [{"bearer": []}], (method, path)
            for status in ("401", "403"):
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path)
