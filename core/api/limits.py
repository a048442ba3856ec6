"""The API's front door for request bodies: size, media type, encoding and well-formed JSON.

An ASGI middleware that reads every request body before the application does — refusing it
by its ``Content-Length`` or, for a chunked upload, as soon as the bytes read pass the limit
(``SUIFANG_API_MAX_BODY_BYTES``) — and checks it the same way for every route, so no handler
ever sees bytes it cannot use. Each refusal is a 4xx in the API's usual error shape saying
what is wrong and where:

- 413 a body over the limit;
- 415 a body that is not JSON, or JSON declared in a charset other than UTF-8;
- 400 a body that is not UTF-8, malformed JSON, ``NaN``/``Infinity``, JSON nested deeper than
  ``SUIFANG_API_MAX_JSON_DEPTH``, a NUL byte in the URL;
- 422 text no database can store: NUL characters and unpaired UTF-16 surrogates (``\\u0000``,
  ``\\ud800``), integers beyond 64 bits — with the path of the offending value.

The channel webhooks (``/channels/{name}/inbound``) get only the size limit here: providers
send forms and XML, and the webhook judges them itself (nesting depth, signature, replay),
recording a refused call as metadata only (:mod:`suifang.core.security.webhook_rejections`).
A pathway upload (``POST /pathways``) is YAML and an HL7 v2 message (``POST /intake/hl7v2``)
is ER7 in the charset its MSH-18 declares: they get only the size limit here too, and their
routes check the rest once the caller is known to be allowed to send them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suifang.core.api.errors import error_body
from suifang.core.config import Settings

__all__ = [
    "BodyRefused",
    "ConcurrencyLimit",
    "RequestBodyGuard",
    "check_json_body",
    "install_body_guard",
    "install_concurrency_limit",
    "load_json_body",
]

_WEBHOOK = re.compile(r"^/channels/[^/]+/inbound/?$")
_RAW_UPLOAD = re.compile(r"^/(pathways|intake/hl7v2)/?$")
_INT64 = 2**63
_SURROGATES = re.compile("[\ud800-\udfff]")
_SETTING = "SUIFANG_API_MAX_BODY_BYTES"
_DEPTH_SETTING = "SUIFANG_API_MAX_JSON_DEPTH"
# Far below the interpreter's recursion limit, which validation, encoding and storage share:
# a body the parser took could otherwise still end in a RecursionError (a 500) further on.
DEFAULT_MAX_JSON_DEPTH: int = Settings.model_fields["api_max_json_depth"].default


class BodyRefused(Exception):
    """A request refused before the application saw it: a status, a code and the reason."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


def _shown(key: str) -> str:
    """A key as it can be echoed back: escapes for what is unprintable, at most 40 characters."""
    escaped = "".join(
        c if c.isprintable() and not _SURROGATES.match(c) else f"\\u{ord(c):04x}" for c in key[:40]
    )
    return escaped + ("…" if len(key) > 40 else "")


def _where(path: list[str | int]) -> str:
    return "body" + "".join(f"[{p}]" if isinstance(p, int) else f".{_shown(p)}" for p in path)


def _refuse_constant(name: str) -> Any:
    raise BodyRefused(
        400, "malformed_json", f"{name} is not valid JSON; send a number or null instead"
    )


def _check_text(text: str, path: list[str | int], what: str) -> None:
    if "\x00" in text:
        raise BodyRefused(
            422,
            "unstorable_text",
            f"{_where(path)}: {what} contains a NUL character (\\u0000), which cannot be stored",
        )
    surrogate = _SURROGATES.search(text)
    if surrogate:
        raise BodyRefused(
            422,
            "unstorable_text",
            f"{_where(path)}: {what} contains an unpaired UTF-16 surrogate "
            f"(\\u{ord(surrogate.group()):04x}), which is not a character",
        )


def _too_deep(path: list[str | int], max_depth: int) -> BodyRefused:
    where = _where(path[:8]) + ("…" if len(path) > 8 else "")
    return BodyRefused(
        400,
        "json_too_deep",
        f"the JSON is nested deeper than {max_depth} levels (at {where}; {_DEPTH_SETTING})",
    )


def check_json_body(body: bytes, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> None:
    """Raise :class:`BodyRefused` unless ``body`` is UTF-8 JSON every database can store."""
    load_json_body(body, max_depth=max_depth)


def load_json_body(body: bytes, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """``body`` parsed, if it is UTF-8 JSON no deeper than ``max_depth`` that every database
    can store; :class:`BodyRefused` (a 4xx, saying what and where) otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRefused(
            400,
            "not_utf8",
            f"the body is not UTF-8: byte 0x{body[exc.start]:02X} at offset {exc.start} "
            f"cannot be decoded; send JSON encoded as UTF-8 (GBK and other encodings are "
            f"not accepted)",
        ) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise BodyRefused(
            400,
            "malformed_json",
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
        ) from None
    except RecursionError:  # deeper than the parser itself goes: far beyond max_depth
        raise BodyRefused(
            400,
            "json_too_deep",
            f"the JSON is nested deeper than {max_depth} levels ({_DEPTH_SETTING})",
        ) from None
    except ValueError as exc:  # e.g. an integer literal of thousands of digits
        raise BodyRefused(400, "malformed_json", f"unreadable JSON: {exc}") from None
    # Iteratively: a hostile body may nest as deep as the parser allowed.
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict | list) and len(path) >= max_depth:
            raise _too_deep(path, max_depth)
        if isinstance(item, str):
            _check_text(item, path, "the text")
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            continue
        elif isinstance(item, int):
            if not -_INT64 <= item < _INT64:
                raise BodyRefused(
                    422,
                    "value_out_of_range",
                    f"{_where(path)}: the integer is out of range (it must fit in 64 bits)",
                )
        elif isinstance(item, dict):
            for key, inner in item.items():
                _check_text(key, [*path, key], "the key")
                stack.append((inner, [*path, key]))
        elif isinstance(item, list):
            stack.extend((inner, [*path, index]) for index, inner in enumerate(item))
    return value


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _check_media_type(content_type: str | None) -> None:
    if content_type is None:
        return  # FastAPI reads an unlabelled body as JSON; so do we
    media_type, _, parameters = content_type.partition(";")
    media_type = media_type.strip().lower()
    if not _is_json(media_type):
        raise BodyRefused(
            415,
            "unsupported_media_type",
            f"the body must be JSON sent as Content-Type: application/json, not {media_type!r}",
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise BodyRefused(
                415,
                "unsupported_charset",
                f"only UTF-8 JSON is accepted, not charset={charset}; re-encode the body as UTF-8",
            )


def _check_url(scope: Scope) -> None:
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query = scope.get("query_string", b"")
    for part, where in ((raw_path, "path"), (query, "query string")):
        lowered = part.lower()
        if b"%00" in lowered or b"\x00" in part:
            raise BodyRefused(400, "bad_url", f"the URL's {where} contains a NUL character (%00)")


class RequestBodyGuard:
    """ASGI middleware: read (at most ``max_body_bytes`` of) the body, check it, pass it on."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    def _too_large(self, declared: int | None = None) -> BodyRefused:
        size = f"is {declared} bytes," if declared is not None else "is"
        return BodyRefused(
            413,
            "body_too_large",
            f"the request body {size} over the limit of {self.max_body_bytes} bytes ({_SETTING})",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            _check_url(scope)
            body = await self._read(scope, receive)
        except BodyRefused as refused:
            await _answer(refused, scope, receive, send)
            return
        except _ClientGone:
            return
        if body and not _WEBHOOK.match(scope["path"]):
            try:
                if not (_RAW_UPLOAD.match(scope["path"]) and scope.get("method") == "POST"):
                    _check_media_type(Headers(scope=scope).get("content-type"))
                    check_json_body(body, max_depth=self.max_json_depth)
            except BodyRefused as refused:
                await _answer(refused, scope, receive, send)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise BodyRefused(
                    400, "bad_content_length", f"Content-Length {declared!r} is not a byte count"
                )
            if int(declared) > self.max_body_bytes:
                raise self._too_large(int(declared))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _ClientGone(Exception):
    """The client disconnected while sending its body: nobody is left to answer."""


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as usual

    return replay


async def _answer(refused: BodyRefused, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(
        status_code=refused.status_code,
        content=error_body(refused.code, refused.message),
        # A refused upload may still be on the wire: close rather than read it all.
        headers={"Connection": "close"} if refused.status_code == 413 else None,
    )
    await response(scope, receive, send)


def install_body_guard(app: FastAPI, settings: Settings) -> None:
    """Check every request body (size, media type, encoding, JSON) before any route runs."""
    app.add_middleware(
        RequestBodyGuard,
        max_body_bytes=settings.api_max_body_bytes,
        max_json_depth=settings.api_max_json_depth,
    )


class ConcurrencyLimit:
    """Admits at most ``limit`` requests at a time; the rest wait their turn without blocking.

    Route handlers do their database work in threads (``def`` routes, and
    :func:`~suifang.core.db.in_thread` in the ``async`` ones that await Temporal): AnyIO's
    thread pool, which this sizes to the connection pool's capacity (``threads``) on the
    first request, so a thread never waits for a connection another thread could not give
    back. A request may use two sessions, so half as many requests as threads are admitted;
    the rest wait here, asynchronously, instead of piling up in front of the threads.
    ``/healthz`` is never held back.
    """

    def __init__(self, app: ASGIApp, *, limit: int, threads: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.threads = threads
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
            if self.threads is not None:
                # The limiter is the event loop's: set once the loop runs.
                anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
        if scope["type"] != "http" or scope.get("path") == "/healthz":
            await self.app(scope, receive, send)
            return
        async with self._slots:
            await self.app(scope, receive, send)


def install_concurrency_limit(app: FastAPI, pool_capacity: int | None) -> None:
    """Keep the requests in flight within what the database pool can serve (half of it), and
    the threads that run their database work at the pool's capacity."""
    if pool_capacity is not None:
        app.add_middleware(
            ConcurrencyLimit, limit=max(1, pool_capacity // 2), threads=pool_capacity
        )
