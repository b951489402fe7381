"""The FastAPI application factory: ``uvicorn --factory service.main:create_app``."""

from __future__ import annotations

from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api.main import api_router
from service.core.config import Settings
from service.db import make_engine, make_session_factory
from service.errors import ServiceError
from service.ui import router as ui_router


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app with its own engine on ``settings.database_url`` (migrate first: ``qbank serve`` does)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        yield
        app.state.engine.dispose()

    app = FastAPI(title="qbank delivery service", version="1.0.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    app.state.session_factory = make_session_factory(app.state.engine)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError):
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})

    @app.get("/health", tags=["health"])
    def health() -> dict:
        with app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ok", "database": app.state.engine.dialect.name}

    app.include_router(api_router, prefix="/v1")
    app.include_router(ui_router)  # web UIs: students at /, admins at /admin
    return app
