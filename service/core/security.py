"""Passwords (argon2) and access tokens (JWT, HS256) with role and tenant claims."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel

ROLES = ("student", "author", "publisher", "admin")
ALGORITHM = "HS256"

_hasher = PasswordHasher()


class TokenUser(BaseModel):
    """Who is calling: the token's subject, roles and tenant."""

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
