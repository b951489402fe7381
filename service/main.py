"""The FastAPI application factory: ``uvicorn --factory service.main:create_app``."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Literal

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from service.api.main import api_router
from service.core.config import Settings
from service.core.hardening import (
    RETRY_AFTER_S,
    BodySizeLimit,
    RequestDeadline,
    SecurityHeaders,
    ServerTiming,
    install_error_handlers,
)
from service.db import make_engine, make_session_factory
from service.errors import ServiceError
from service.relay.outbox import outbox_lag
from service.schemas import OutboxLagOut
from service.sign_in import Revocations
from service.ui import router as ui_router

DOCS_STATIC = "/docs-static"


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
    # how far the relay is behind (docs/relay.md); absent when the database does not answer
    outbox: OutboxLagOut | None = None


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app with its own engine on ``settings.database_url`` (migrate first: ``qbank serve`` does)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        yield
        app.state.engine.dispose()

    # /docs and /redoc with Swagger UI and ReDoc served from the package, not a CDN.
    app: FastAPI = FastAPIOffline(
        title="qbank delivery service", version="1.0.0", lifespan=lifespan, static_url=DOCS_STATIC
    )
    app.state.settings = settings
    app.state.engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
        pool_timeout_s=settings.db_pool_timeout_s,
    )
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.revocations = Revocations(app.state.session_factory, settings.revocation_refresh_s)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )

    # Added last, so outermost: the timing and the deadline cover everything, the size limit acts
    # before CORS.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders, static_prefixes=(DOCS_STATIC, "/ui-static/"))
    app.add_middleware(RequestDeadline, seconds=settings.request_timeout_s)
    app.add_middleware(ServerTiming)

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError):
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})

    install_error_handlers(app)

    @app.get(
        "/health",
        tags=["health"],
        response_model=Health,
        responses={503: {"model": Health, "description": "the database does not answer"}},
    )
    def health():
        """Database reachable, and the outbox lag: unsent events and the oldest one's age (a
        growing age means the relay or its broker is down, see docs/relay.md)."""
        dialect = app.state.engine.dialect.name
        try:
            with app.state.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                lag = outbox_lag(connection)
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError):
            return JSONResponse(
                status_code=503,
                content={"status": "unavailable", "database": dialect},
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return {"status": "ok", "database": dialect, "outbox": lag.as_dict()}

    app.include_router(api_router, prefix="/v1")
    app.include_router(ui_router)  # web UIs: students at /, admins at /admin
    return app
