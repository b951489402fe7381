"""What stands between the network and the routes: a body size limit, a request deadline and
security headers (pure ASGI middleware, so they act before any parsing or authentication), and
the error handlers that turn database trouble and unencodable input into clear 4xx/503 answers
instead of a traceback and a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

log = logging.getLogger("qbank.service")

# Answers to "come back later": the database is down, frozen, or every connection is busy.
RETRY_AFTER_S = 2
DB_UNAVAILABLE = "the database is unavailable or overloaded; retry later"

_API_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_JSON_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


async def _send_json(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """413 for a body over ``max_bytes``, before any route reads or parses it: by its
    Content-Length without reading anything, or, for a chunked upload (no length), by reading
    at most ``max_bytes`` + 1 bytes first and handing the buffered body on."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body larger than {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                return await _send_json(send, 400, "Content-Length: not an integer")
            if length > self.max_bytes:
                return await _send_json(send, 413, too_large, [(b"connection", b"close")])
            return await self.app(scope, receive, send)  # the server reads no more than the length
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await _send_json(send, 413, too_large, [(b"connection", b"close")])
            more = message.get("more_body", False)
        buffered = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return buffered.pop() if buffered else await receive()

        await self.app(scope, replay, send)


class ServerTiming:
    """``Server-Timing: app;dur=<ms>`` on every response: the time from the request reaching the
    app to its response headers (routing, authentication, the handler and its database work).
    What a client measures beyond it is the network, the server's HTTP parsing and the client's own
    waiting, which tells a slow service from a slow client (benchmarks/bench_service_load.py)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()

        async def timed_send(message):
            if message["type"] == "http.response.start":
                elapsed_ms = (time.perf_counter() - started) * 1000.0
                header = (b"server-timing", f"app;dur={elapsed_ms:.2f}".encode())
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, timed_send)


class RequestDeadline:
    """503 with Retry-After when a request has no answer after ``seconds`` (a frozen database
    answers nothing; a statement timeout cannot fire there). The handler's thread is left to
    finish on its own, and what it sends later is dropped."""

    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"started": False, "timed_out": False}

        async def guarded_send(message):
            if state["timed_out"]:
                return
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        task.add_done_callback(_log_late_failure)
        done, _ = await asyncio.wait({task}, timeout=self.seconds)
        if done:
            return task.result()
        if state["started"]:  # streaming already: let it finish
            return await task
        state["timed_out"] = True
        log.error("%s %s: no answer after %.1f s", scope.get("method"), scope.get("path"), self.seconds)
        await _send_json(
            send,
            503,
            f"no answer within {self.seconds:g} s; {DB_UNAVAILABLE}",
            [(b"retry-after", str(RETRY_AFTER_S).encode())],
        )


def _log_late_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("request failed after its deadline: %r", task.exception())


class SecurityHeaders:
    """The usual security headers on every response that has not set its own; ``no-store`` on
    everything but immutable static assets; a deny-all CSP on the JSON API."""

    def __init__(self, app, static_prefixes: tuple[str, ...]):
        self.app = app
        self.static_prefixes = static_prefixes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        api = path.startswith("/v1/") or path == "/health"
        static = path.startswith(self.static_prefixes)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _API_HEADERS if k not in present]
                if not static and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                if api and _JSON_CSP[0] not in present:
                    extra.append(_JSON_CSP)
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


# ---------------------------------------------------------------------------- error handlers
def _json_safe(value):
    """``value`` with what JSON cannot carry (NaN, infinities, lone surrogates) replaced."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(_json_safe(k)): _json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float):
        return value
    return _json_safe(str(value))


def _validation_errors(exc: RequestValidationError) -> list[dict]:
    """FastAPI's 422 body (``loc``, ``msg``, ``type``) without the echoed input, which may hold
    what JSON cannot encode (a NaN, a lone surrogate) or a secret (a password)."""
    return [
        {
            "loc": _json_safe(list(e.get("loc", ()))),
            "msg": _json_safe(e.get("msg", "")),
            "type": e.get("type"),
        }
        for e in exc.errors()
    ]


def _unavailable(exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
    return JSONResponse(
        status_code=503, content={"detail": DB_UNAVAILABLE}, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": _validation_errors(exc)})

    @app.exception_handler(sa_exc.DataError)
    async def _bad_value(_request: Request, exc: sa_exc.DataError):
        # The last line of defence: the schemas bound every value, so this names no field.
        log.warning("database refused a value: %s", exc.orig)
        return JSONResponse(status_code=422, content={"detail": "a value is out of range for the database"})

    @app.exception_handler(sa_exc.OperationalError)
    async def _operational(_request: Request, exc: sa_exc.OperationalError):
        return _unavailable(exc)

    @app.exception_handler(sa_exc.InterfaceError)
    async def _interface(_request: Request, exc: sa_exc.InterfaceError):
        return _unavailable(exc)

    @app.exception_handler(sa_exc.TimeoutError)
    async def _pool_timeout(_request: Request, exc: sa_exc.TimeoutError):
        return _unavailable(exc)
