"""The API's docs work on a hospital network without internet: /docs and /redoc load their
assets from the API itself, and need no token; and they are complete (issue 25): every
operation described in English and Chinese, every request body with a valid example, every
success answer with a schema."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from google.protobuf import json_format
from pydantic import TypeAdapter, ValidationError
from temporalio.api.common.v1 import Payloads

from suifang.core.api import create_app
from suifang.core.config import load_settings
from suifang.core.pathway_checks import check_template
from suifang.core.pathways import parse_template
from suifang.core.runtime import Runtime
from suifang.workflows.fhir_intake import patient_of, prepare_discharge, read_bundle, results_of
from suifang.workflows.hl7_messages import parse as parse_hl7


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


# --------------------------------------------------------------------------- complete docs

_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def body_examples(operation: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(media type, name, value) of every example of the operation's request body."""
    for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
        if "example" in content:
            yield media_type, "example", content["example"]
        for name, example in (content.get("examples") or {}).items():
            yield media_type, name, example["value"]
        schema = content.get("schema") or {}
        if "example" in schema:
            yield media_type, "schema example", schema["example"]
        for index, value in enumerate(schema.get("examples") or []):
            yield media_type, f"schema example {index}", value


def test_every_operation_is_described_in_chinese_and_english_with_examples_and_schemas(
    tmp_path: Path,
) -> None:
    """Issue 25: an integrator reads each operation in the docs without the source at hand —
    what it does in English and in Chinese, a request body to start from, and the shape of
    every success answer."""
    spec = create_app(settings=load_settings(data_dir=tmp_path / "var")).openapi()
    undescribed, without_example, without_schema = [], [], []
    for method, path, operation in operations(spec):
        where = f"{method.upper()} {path}"
        description = operation.get("description", "")
        if not (_CJK.search(description) and _LATIN.search(description)):
            undescribed.append(where)
        if "requestBody" in operation and not any(body_examples(operation)):
            without_example.append(where)
        for status, response in operation["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            content = response.get("content") or {}
            if not content or not all(media.get("schema") for media in content.values()):
                without_schema.append(f"{where} {status}")
    assert undescribed == [], "operations without a description in Chinese and English"
    assert without_example == [], "request bodies without an example"
    assert without_schema == [], "success responses without a schema"


def _route_contexts(app: FastAPI) -> dict[tuple[str, str], Any]:
    """(method, path) → the route, with what the spec names it by (its full path)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = iterate(app.routes) if iterate is not None else app.routes
    found = {}
    for route in routes:
        if isinstance(getattr(route, "original_route", route), APIRoute):
            for method in route.methods:
                found[(method.lower(), route.path_format)] = route
    return found


def _hl7_message(runtime: Runtime, value: str) -> None:
    parsed = parse_hl7(value.encode("utf-8"), timezone=runtime.settings.timezone)
    assert parsed.header.message_type.startswith("ADT^"), parsed.header


def _pathway_yaml(runtime: Runtime, value: str) -> None:
    template, _ = parse_template(value, "example")
    problems = [f.text() for f in check_template(template, runtime.vocabulary()) if not f.warning]
    assert problems == []
    registered = runtime.catalog.keys()  # (id, version) pairs, retired ones included
    assert template.key not in registered, "an example must import as new"


async def _fhir_bundle(runtime: Runtime, value: dict[str, Any]) -> None:
    content = read_bundle(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if content.report is not None:
        patient_of(runtime, content)
        results_of(content)
    else:
        await prepare_discharge(runtime, content)


def _codec_payloads(runtime: Runtime, value: dict[str, Any]) -> None:
    json_format.Parse(json.dumps(value), Payloads())


#: Routes that read their body themselves (no body model): how each checks an example.
RAW_BODIES: dict[tuple[str, str], Callable[[Runtime, Any], Any]] = {
    ("post", "/intake/hl7v2"): _hl7_message,
    ("post", "/pathways"): _pathway_yaml,
    ("post", "/fhir/R4/Bundle"): _fhir_bundle,
    ("post", "/codec/decode"): _codec_payloads,
    ("post", "/codec/encode"): _codec_payloads,
}


async def test_every_request_body_example_is_valid_for_its_route(runtime: Runtime) -> None:
    """An example that drifts from its model (a renamed field, a tighter pattern, a pathway
    check) fails here rather than in an integrator's first call: each is validated as the
    route validates its body — the body model, or the route's own reader for raw bodies."""
    app = create_app(runtime)
    routes = _route_contexts(app)
    checked = 0
    for method, path, operation in operations(app.openapi()):
        examples = list(body_examples(operation))
        if not examples:
            continue
        route = routes[(method, path)]
        for media_type, name, value in examples:
            where = f"{method.upper()} {path} {media_type} example {name!r}"
            if route.body_field is not None:
                model = TypeAdapter(route.body_field.field_info.annotation)
                try:
                    model.validate_python(value)
                except ValidationError as exc:
                    pytest.fail(f"{where}: {exc}")
            else:
                assert (method, path) in RAW_BODIES, f"{where}: add how its body is checked"
                try:
                    done = RAW_BODIES[(method, path)](runtime, value)
                    if inspect.isawaitable(done):
                        await done
                except Exception as exc:  # noqa: BLE001 -- whatever the reader refuses it with
                    pytest.fail(f"{where}: {type(exc).__name__}: {exc}")
            checked += 1
    assert checked >= 40, checked
