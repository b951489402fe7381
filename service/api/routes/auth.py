"""Tokens: password login for real users; mock login only when ``QBANK_ENV=dev``."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from service.api.deps import SessionDep, SettingsDep
from service.core.security import create_token
from service.schemas import Login, MockLogin, Token
from service.users import authenticate

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/mock-login", response_model=Token)
def mock_login(body: MockLogin, settings: SettingsDep) -> Token:
    if not settings.mock_login_enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "mock login exists only when QBANK_ENV=dev")
    tenant = body.tenant_id or settings.default_tenant
    token = create_token(
        body.user_id, body.roles, tenant, secret=settings.secret_key, ttl_minutes=settings.token_ttl_minutes
    )
    return Token(access_token=token, roles=body.roles, tenant_id=tenant)


@router.post("/login", response_model=Token)
def login(body: Login, session: SessionDep, settings: SettingsDep) -> Token:
    tenant = body.tenant_id or settings.default_tenant
    user = authenticate(session, tenant, body.username, body.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username, password or tenant")
    token = create_token(
        user.id, user.roles, tenant, secret=settings.secret_key, ttl_minutes=settings.token_ttl_minutes
    )
    return Token(access_token=token, roles=user.roles, tenant_id=tenant)
