"""Annotated dependencies: the settings, a database session per request, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.security import InvalidToken, TokenUser, decode_token


# The small dependencies are ``async``: they do not block, and a sync one costs a hop to the
# thread pool on every request.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    # An async dependency: its teardown runs on the event loop, not in the thread pool. A sync
    # one would need a free pool thread to give its connection back, and with every thread
    # waiting for a connection (SQLite has one) none would ever come.
    with request.app.state.session_factory() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False)


async def get_current_user(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenUser:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        user = decode_token(credentials.credentials, secret=settings.secret_key)
    except InvalidToken as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"invalid or expired token: {exc}",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    await check_not_revoked(request, user)
    return user


async def check_not_revoked(request: Request, user: TokenUser) -> None:
    """401 for a signed-out token (``service.sign_in.Revocations``)."""
    revocations = request.app.state.revocations
    if revocations.stale():
        await anyio.to_thread.run_sync(revocations.refresh)
    if user.jti in revocations:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "token signed out", headers={"WWW-Authenticate": "Bearer"}
        )


CurrentUser = Annotated[TokenUser, Depends(get_current_user)]


def require_roles(*roles: str):
    """A dependency admitting callers holding any of ``roles``."""

    async def checker(user: CurrentUser) -> TokenUser:
        if not user.has_any(*roles):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs one of the roles {list(roles)}")
        return user

    return checker


StudentUser = Annotated[TokenUser, Depends(require_roles("student", "admin"))]
AuthorUser = Annotated[TokenUser, Depends(require_roles("author", "admin"))]
PublisherUser = Annotated[TokenUser, Depends(require_roles("publisher", "admin"))]
ContentReader = Annotated[TokenUser, Depends(require_roles("author", "publisher", "admin"))]
AdminUser = Annotated[TokenUser, Depends(require_roles("admin"))]
