"""Passwords (argon2) and access tokens (JWT, HS256) with role and tenant claims."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict

ROLES = ("student", "author", "publisher", "admin")
ALGORITHM = "HS256"

_hasher = PasswordHasher()


class TokenUser(BaseModel):
    """Who is calling: the token's subject, roles and tenant (frozen: one is shared by the
    requests of a token, see :func:`decode_token`)."""

    model_config = ConfigDict(frozen=True)

    sub: str
    roles: list[str]
    tenant: str
    jti: str | None = None  # the token's id, for sign-out (service.sign_in.revoke)
    exp: int | None = None

    def has_any(self, *roles: str) -> bool:
        return bool(set(self.roles) & set(roles))


class InvalidToken(Exception):
    pass


def hash_password(password: str) -> str:
    return _hasher.hash(password)


# Verified when the username is unknown, so that an unknown and a known user take the same time.
DUMMY_HASH = _hasher.hash(uuid.uuid4().hex)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_token(user_id: str, roles: list[str], tenant: str, *, secret: str, ttl_minutes: int) -> str:
    now = datetime.now(UTC)
    payload = {
        "sub": user_id,
        "roles": list(roles),
        "tenant": tenant,
        "iat": int(now.timestamp()),
        "jti": uuid.uuid4().hex,
        "exp": int((now + timedelta(minutes=ttl_minutes)).timestamp()),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def decode_token(token: str, *, secret: str) -> TokenUser:
    """The caller named by a valid token; :class:`InvalidToken` for anything else."""
    user = _verified(token, secret)
    if user.exp < time.time():  # the verified claims are cached; their expiry is checked on each use
        raise InvalidToken("Signature has expired")
    return user


# A student's token comes with every request: verifying its signature and building the caller once
# per token, not per request, saves a good part of a request's CPU. Only valid tokens are cached
# (an exception is not), keyed by the token and the secret.
@lru_cache(maxsize=4096)
def _verified(token: str, secret: str) -> TokenUser:
    try:
        payload = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    roles, tenant = payload.get("roles"), payload.get("tenant")
    if not isinstance(roles, list) or not isinstance(tenant, str) or not tenant:
        raise InvalidToken("token lacks roles or tenant")
    return TokenUser(
        sub=str(payload["sub"]),
        roles=[r for r in roles if r in ROLES],
        tenant=tenant,
        jti=str(payload["jti"]) if payload.get("jti") else None,
        exp=int(payload["exp"]),
    )
