"""Sign-in, sign-out and the packaged static files.

The sign-in page's script calls the API (``POST /v1/auth/login``, or ``/v1/auth/mock-login``
in dev) and hands the token to ``POST /session``. Without JavaScript the same forms post
here, and these routes call the very same login handlers, so both ways check passwords,
tenants and the dev switch identically.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError

from service.api.deps import SessionDep, SettingsDep
from service.api.routes import auth as auth_routes
from service.core.security import InvalidToken, TokenUser, decode_token
from service.schemas import Login, MockLogin
from service.sign_in import revoke
from service.ui.rendering import page, static_response
from service.ui.session import (
    CSRF_FIELD,
    check_csrf,
    clear_session_cookie,
    safe_next,
    set_session_cookie,
    signed_in,
)

router = APIRouter(include_in_schema=False)


class SessionStart(BaseModel):
    access_token: str = Field(min_length=1)
    next: str | None = None


@router.get("/ui-static/{name}")
def static_file(name: str) -> Response:
    return static_response(name)


@router.get("/signin")
def signin_page(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    next: str | None = None,
    needs: str | None = None,
):
    current = signed_in(request, settings)
    return page(
        request,
        "signin.html",
        current=current,
        session=session,
        next_path=safe_next(next, ""),
        needs=needs,
        default_tenant=settings.default_tenant,
        error=None,
    )


def _landing(user: TokenUser, requested: str | None) -> str:
    return safe_next(requested, "/admin" if user.has_any("admin") and not user.has_any("student") else "/")


def _signed_in_redirect(request: Request, settings, access_token: str, requested: str | None) -> Response:
    user = decode_token(access_token, secret=settings.secret_key)
    response = RedirectResponse(_landing(user, requested), status_code=status.HTTP_303_SEE_OTHER)
    set_session_cookie(response, request, access_token, settings)
    return response


@router.post("/signin")
async def signin_form(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    username: str = Form(""),
    password: str = Form(""),
    tenant_id: str = Form(""),
    next: str = Form(""),
) -> Response:
    """The sign-in form without JavaScript: the ``/v1/auth/login`` handler itself."""
    try:
        token = await auth_routes.login(
            Login(username=username, password=password, tenant_id=tenant_id or None),
            request,
            session,
            settings,
        )
    except ValidationError:
        error = "Enter your username and password."
    except HTTPException as exc:
        error = f"Sign-in failed: {exc.detail}."
    else:
        return _signed_in_redirect(request, settings, token.access_token, next)
    return page(
        request,
        "signin.html",
        status_code=status.HTTP_401_UNAUTHORIZED,
        next_path=safe_next(next, ""),
        needs=None,
        default_tenant=settings.default_tenant,
        error=error,
    )


@router.post("/signin/dev")
def dev_signin_form(
    request: Request,
    settings: SettingsDep,
    user_id: str = Form("dev-student"),
    role: str = Form("student"),
    next: str = Form(""),
) -> Response:
    """The dev sign-in without JavaScript: the ``/v1/auth/mock-login`` handler (404 outside dev)."""
    try:
        body = MockLogin(user_id=user_id, roles=[role])
    except ValidationError as exc:
        raise HTTPException(422, f"user_id or role: {exc.errors()[0]['msg']}") from None
    token = auth_routes.mock_login(body, settings)
    return _signed_in_redirect(request, settings, token.access_token, next)


@router.post("/session")
def start_session(body: SessionStart, request: Request, settings: SettingsDep) -> JSONResponse:
    """Keep a token from ``/v1/auth/login`` (or dev mock login) in the session cookie.

    JSON only: a cross-site form cannot send ``application/json`` without a CORS preflight,
    so no other site can sign a visitor in as someone else.
    """
    try:
        user = decode_token(body.access_token, secret=settings.secret_key)
    except InvalidToken as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, f"access_token: invalid or expired ({exc})"
        ) from None
    response = JSONResponse({"location": _landing(user, body.next), "roles": user.roles})
    set_session_cookie(response, request, body.access_token, settings)
    return response


@router.post("/signout")
async def sign_out(request: Request, settings: SettingsDep, session: SessionDep) -> Response:
    current = await anyio.to_thread.run_sync(signed_in, request, settings)
    if current is not None:
        check_csrf(current, (await request.form()).get(CSRF_FIELD))
        await anyio.to_thread.run_sync(revoke, session, request.app.state.revocations, current.user)
    response = RedirectResponse("/signin", status_code=status.HTTP_303_SEE_OTHER)
    clear_session_cookie(response)
    return response
