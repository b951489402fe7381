"""Browser sessions for the web UI: the service's own JWT in an httpOnly cookie.

The sign-in page obtains a token from the API (``POST /v1/auth/login``, or
``/v1/auth/mock-login`` in dev) and hands it to ``POST /session``, which checks it with the
service's secret and stores it in a cookie that scripts cannot read (``HttpOnly``) and that
other sites cannot send (``SameSite=Strict``). Every page decodes the same token the API
would, so the UI's caller, roles and tenant are exactly the API's.

Forms that change something also carry a CSRF token: an HMAC of the session token under the
service's secret, so it needs no server-side storage and dies with the session.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import Response

from service.api.deps import SettingsDep
from service.core.config import Settings
from service.core.security import InvalidToken, TokenUser, decode_token

COOKIE_NAME = "qbank_ui_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class UiUser:
    """The signed-in caller of a page and the CSRF token its forms must echo."""

    user: TokenUser
    csrf_token: str

    def is_admin(self) -> bool:
        return self.user.has_any("admin")


def csrf_token_for(access_token: str, secret: str) -> str:
    return hmac.new(secret.encode(), b"csrf:" + access_token.encode(), hashlib.sha256).hexdigest()[:40]


def signed_in(request: Request, settings: Settings) -> UiUser | None:
    """The caller named by the session cookie, or None when there is none or it is no longer valid
    (expired or signed out). Reads the database at most every ``revocation_refresh_s``: call it
    from a thread, not the event loop."""
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        return None
    try:
        user = decode_token(token, secret=settings.secret_key)
    except InvalidToken:
        return None
    revocations = request.app.state.revocations  # signed out (service.sign_in)
    if revocations.stale():
        revocations.refresh()
    if user.jti in revocations:
        return None
    return UiUser(user=user, csrf_token=csrf_token_for(token, settings.secret_key))


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` when it is a path on this site, else ``default`` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def set_session_cookie(response: Response, request: Request, access_token: str, settings: Settings) -> None:
    response.set_cookie(
        COOKIE_NAME,
        access_token,
        max_age=settings.token_ttl_minutes * 60,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")


def _require(*roles: str):
    """A dependency admitting a signed-in caller with any of ``roles``; others go to the sign-in page."""

    def dependency(request: Request, settings: SettingsDep) -> UiUser:
        current = signed_in(request, settings)
        if current is None or not current.user.has_any(*roles):
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            reason = "" if current is None else f"&needs={quote(','.join(roles))}"
            # A 303 from a dependency: the browser follows it like a route's redirect.
            raise HTTPException(
                status.HTTP_303_SEE_OTHER,
                headers={"Location": f"/signin?next={quote(here, safe='')}{reason}"},
            )
        return current

    return dependency


def check_csrf(current: UiUser, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(presented, current.csrf_token):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or stale; reload the page"
        )


StudentPage = Annotated[UiUser, Depends(_require("student", "admin"))]
AdminPage = Annotated[UiUser, Depends(_require("admin"))]
AuthorPage = Annotated[UiUser, Depends(_require("author", "admin"))]
