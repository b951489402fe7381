"""Users with argon2 password hashes (``qbank create-user``, ``POST /v1/admin/users``)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from service.core.passwords import password_problem
from service.core.security import ROLES, hash_password
from service.db import commit_or_conflict
from service.errors import Invalid
from service.events import audit
from service.models import User


def create_user(
    session: Session, tenant_id: str, username: str, password: str, roles: list[str], actor: str = "cli"
) -> User:
    """Create a user; commits. Raises :class:`Invalid` for bad roles or a weak password
    (:func:`service.core.passwords.password_problem`),
    :class:`Conflict` when the username is taken in the tenant."""
    bad = sorted(set(roles) - set(ROLES))
    if bad or not roles:
        raise Invalid(f"roles: {bad or roles} not allowed; choose from {list(ROLES)}")
    problem = password_problem(password, username)
    if problem:
        raise Invalid(f"password: {problem}")
    if not username.strip():
        raise Invalid("username: must not be empty")
    user = User(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        username=username.strip(),
        password_hash=hash_password(password),
        roles=sorted(set(roles)),
        is_active=True,
    )
    session.add(user)
    audit(
        session,
        tenant_id,
        actor,
        "user.create",
        "user",
        user.id,
        {"username": user.username, "roles": user.roles},
    )
    commit_or_conflict(session, f"username {username!r} already exists in tenant {tenant_id!r}")
    return user
