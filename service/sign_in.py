"""Password sign-in and sign-out, safe under a flood of guesses.

- The password hash (argon2, ~100 ms of CPU and 64 MiB) is computed outside any database
  transaction, with at most ``hash_concurrency`` at once per process and in threads of its own,
  so a flood of logins cannot hold the database (SQLite has one connection) or the request
  threads that serve students.
- An unknown username costs the same hash (of a dummy), so timing does not tell who exists.
- Failed logins are counted per account (tenant and username) and per client address in the
  database, so the limits hold across workers and instances; past a limit the login answers 429
  with ``Retry-After`` until the window ends, without hashing anything.
- Sign-out stores the token's id (``jti``) until the token would expire. Each process keeps the
  revoked ids in memory and reads new ones at most every ``revocation_refresh_s``: a signed-out
  token is refused at once by the instance that signed it out, and by the others within that time.
"""

from __future__ import annotations

import threading
import time

import anyio
from fastapi import HTTPException, Request, status
from sqlalchemy import case, delete, select
from sqlalchemy.orm import Session, sessionmaker

from service.auth_models import LoginThrottle, RevokedToken
from service.core.config import Settings
from service.core.security import DUMMY_HASH, TokenUser, create_token, verify_password
from service.db import dialect_insert
from service.models import User
from service.schemas import Login, Token


def _keys(tenant: str, username: str, client: str) -> tuple[str, str]:
    return f"account:{tenant}:{username}", f"client:{client}"


def _limits(settings: Settings) -> dict[str, int]:
    return {
        "account": settings.login_max_failures_per_account,
        "client": settings.login_max_failures_per_client,
    }


def _lookup(session: Session, settings: Settings, keys: tuple[str, str], tenant: str, username: str):
    """(seconds to wait or 0, whether the account has failures on record, the user or None); one
    short read transaction."""
    now = time.time()
    rows = session.execute(select(LoginThrottle).where(LoginThrottle.key.in_(keys))).scalars().all()
    limits = _limits(settings)
    wait, account_failures = 0.0, False
    for row in rows:
        window_end = row.window_start + settings.login_window_s
        if window_end <= now:
            continue
        account_failures |= row.key == keys[0]
        if row.failures >= limits[row.key.split(":", 1)[0]]:
            wait = max(wait, window_end - now)
    user = None
    if not wait:
        user = session.execute(
            select(User.id, User.password_hash, User.roles, User.is_active).where(
                User.tenant_id == tenant, User.username == username
            )
        ).first()
    session.commit()  # ends the transaction: the connection goes back before any hashing
    return wait, account_failures, user


def _record_failure(session: Session, settings: Settings, keys: tuple[str, str]) -> None:
    """One more failure for both keys; a window older than ``login_window_s`` starts again."""
    now = time.time()
    cutoff = now - settings.login_window_s
    insert = dialect_insert(session)(LoginThrottle)
    for key in keys:
        statement = insert.values(key=key, failures=1, window_start=now)
        expired = LoginThrottle.window_start <= cutoff
        statement = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "failures": case((expired, 1), else_=LoginThrottle.failures + 1),
                "window_start": case((expired, now), else_=LoginThrottle.window_start),
            },
        )
        session.execute(statement)
    session.commit()


def _forget_failures(session: Session, account_key: str) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == account_key))
    session.commit()


def _too_many(wait: float) -> HTTPException:
    seconds = max(1, int(wait + 0.999))
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many failed logins; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def _hash_limiter(request: Request, settings: Settings) -> anyio.CapacityLimiter:
    state = request.app.state
    if getattr(state, "hash_limiter", None) is None:
        state.hash_limiter = anyio.CapacityLimiter(settings.hash_concurrency)
    return state.hash_limiter


async def password_login(request: Request, session: Session, settings: Settings, body: Login) -> Token:
    """A token for the user, or 401 (wrong username, password or tenant), or 429 (throttled)."""
    tenant = body.tenant_id or settings.default_tenant
    client = request.client.host if request.client else "unknown"
    keys = _keys(tenant, body.username, client)
    wait, account_failures, user = await anyio.to_thread.run_sync(
        _lookup, session, settings, keys, tenant, body.username
    )
    if wait:
        raise _too_many(wait)
    stored = user.password_hash if user is not None else DUMMY_HASH
    ok = await anyio.to_thread.run_sync(
        verify_password, stored, body.password, limiter=_hash_limiter(request, settings)
    )
    if not ok or user is None or not user.is_active:
        await anyio.to_thread.run_sync(_record_failure, session, settings, keys)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username, password or tenant")
    if account_failures:
        await anyio.to_thread.run_sync(_forget_failures, session, keys[0])
    token = create_token(
        user.id, user.roles, tenant, secret=settings.secret_key, ttl_minutes=settings.token_ttl_minutes
    )
    return Token(access_token=token, roles=user.roles, tenant_id=tenant)


# ---------------------------------------------------------------------------- sign-out
def revoke(session: Session, revocations: Revocations, user: TokenUser) -> None:
    """Sign the token out: stored until it would expire (expired ones are swept meanwhile)."""
    if not user.jti:
        return
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < int(time.time())))
    session.execute(
        dialect_insert(session)(RevokedToken)
        .values(jti=user.jti, expires_at=user.exp or int(time.time()))
        .on_conflict_do_nothing(index_elements=["jti"])
    )
    session.commit()
    revocations.add(user.jti)


class Revocations:
    """The revoked token ids this process knows, refreshed from the database when stale."""

    def __init__(self, session_factory: sessionmaker, refresh_s: float):
        self._session_factory = session_factory
        self._refresh_s = refresh_s
        self._revoked: set[str] = set()
        self._last_id = 0
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def add(self, jti: str) -> None:
        self._revoked.add(jti)

    def stale(self) -> bool:
        return time.monotonic() - self._checked_at >= self._refresh_s

    def refresh(self) -> None:
        with self._lock:
            if not self.stale():
                return
            with self._session_factory() as session:
                rows = session.execute(
                    select(RevokedToken.id, RevokedToken.jti).where(RevokedToken.id > self._last_id)
                ).all()
                session.commit()
            for row_id, jti in rows:
                self._revoked.add(jti)
                self._last_id = max(self._last_id, row_id)
            self._checked_at = time.monotonic()

    def __contains__(self, jti: str | None) -> bool:
        return jti is not None and jti in self._revoked
