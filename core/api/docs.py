"""The API's documentation: pages served with their own assets, and a complete OpenAPI.

The pages work on a hospital network without internet (FastAPI's defaults load Swagger UI and
ReDoc from a public CDN). The spec names the bearer token scheme (Swagger's Authorize button)
on every guarded operation, and the error answers every operation can give (401, 403, 503) in
the API's one error shape.

The assets come from the ``fastapi-offline`` package (MIT; Swagger UI and ReDoc under their
own Apache-2.0 and MIT licences) and are mounted at ``/docs/assets``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "REDOC_BUNDLE", "install_docs"]

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "example": "not_found"},
                "message": {"type": "string", "example": "no journey 42"},
            },
        }
    },
}
_ERRORS = {
    "401": "No token, or a token that is wrong, expired or revoked (`WWW-Authenticate: Bearer`).",
    "403": "The token's role, departments or scopes do not allow this.",
    "503": "The database or Temporal cannot be reached; retry after `Retry-After` seconds.",
}

ASSETS = "/docs/assets"
_STATIC = Path(fastapi_offline.__file__).parent / "static"
# ReDoc's bundle draws its sidebar logo from Redocly's CDN: on a closed network that is a
# request refused at every page load. The bundle is served with the logo inlined instead.
_REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_INLINE_LOGO = (
    b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E"
)
REDOC_BUNDLE = f"{ASSETS}/redoc.offline.js"


@functools.cache
def _redoc_offline() -> bytes:
    return (_STATIC / "redoc.standalone.js").read_bytes().replace(_REDOC_CDN_LOGO, _INLINE_LOGO)


def install_docs(app: FastAPI, public: set[str]) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` on local assets; create the app with
    ``docs_url=None, redoc_url=None``."""
    router = APIRouter(include_in_schema=False)
    title = f"{app.title} API"

    @router.get("/docs")
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @router.get("/docs/oauth2-redirect")
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            redoc_js_url=REDOC_BUNDLE,
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    @router.get(REDOC_BUNDLE)
    def redoc_bundle() -> Response:
        return Response(
            _redoc_offline(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.include_router(router)  # before the mount: the offline bundle's route wins
    app.mount(ASSETS, StaticFiles(directory=_STATIC), name="docs-assets")
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete(build(), public)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(spec: dict[str, Any], public: set[str]) -> dict[str, Any]:
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `suifang tokens create USERNAME`.",
        }
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if path not in public:
                operation["security"] = [{"bearer": []}]
                for status, text in _ERRORS.items():
                    responses.setdefault(status, {"description": text, "content": error})
            else:
                responses.setdefault("503", {"description": _ERRORS["503"], "content": error})
    return spec
