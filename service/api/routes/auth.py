"""Tokens: password login for real users, sign-out; mock login only when ``QBANK_ENV=dev``."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from service.api.deps import CurrentUser, SessionDep, SettingsDep
from service.core.security import create_token
from service.schemas import Login, MockLogin, Token
from service.sign_in import password_login, revoke

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
async def login(body: Login, request: Request, session: SessionDep, settings: SettingsDep) -> Token:
    """A token for a user's password; 429 with Retry-After after too many failed logins for the
    account or from the client (``service.sign_in``)."""
    return await password_login(request, session, settings, body)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, user: CurrentUser, session: SessionDep) -> None:
    """Sign the bearer token out: it is refused from now on, on every instance."""
    revoke(session, request.app.state.revocations, user)
