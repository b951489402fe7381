"""Templates, static assets and the headers every page carries.

All assets ship in this package (``templates/``, ``static/``); pages load nothing from other
origins, and the Content-Security-Policy says so to the browser: scripts and styles only
from this site, no inline script, no plugins, no framing.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import jinja2
from fastapi import HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from service.ui import queries
from service.ui.markdown import render_markdown, render_markdown_inline
from service.ui.session import CSRF_FIELD, UiUser

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["markdown"] = render_markdown
_environment.filters["markdown_inline"] = render_markdown_inline


@cache
def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """name -> (content, media type, short content hash), read once."""
    files = {}
    for path in STATIC_DIR.iterdir():
        if path.is_file() and path.suffix in STATIC_TYPES:
            content = path.read_bytes()
            files[path.name] = (content, STATIC_TYPES[path.suffix], hashlib.sha256(content).hexdigest()[:12])
    return files


def static_url(name: str) -> str:
    """URL of a packaged asset with its content hash, so browsers may cache it for good."""
    return f"/ui-static/{name}?v={_static_files()[name][2]}"


def static_response(name: str) -> Response:
    entry = _static_files().get(name)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no static file {name!r}")
    content, media_type, _ = entry
    return Response(
        content,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"},
    )


_environment.globals.update(static_url=static_url, csrf_field=CSRF_FIELD)


def page(
    request: Request,
    template: str,
    *,
    current: UiUser | None = None,
    session: Session | None = None,
    status_code: int = 200,
    **context,
) -> HTMLResponse:
    """Render ``template`` with the common context (signed-in user and name, dev flag) and security headers."""
    settings = request.app.state.settings
    display_name = None
    if current is not None:
        display_name = (
            current.user.sub
            if session is None
            else queries.display_name(session, current.user.tenant, current.user.sub)
        )
    if session is not None:
        # End the page's read transaction before rendering: on SQLite every transaction holds
        # the single writer lock (BEGIN IMMEDIATE, see service.db) until it ends.
        session.commit()
    html = _environment.get_template(template).render(
        request_path=request.url.path,
        current=current,
        display_name=display_name,
        dev_mode=settings.mock_login_enabled,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def message_page(
    request: Request,
    current: UiUser | None,
    session: Session | None,
    title: str,
    message: str,
    status_code: int,
) -> HTMLResponse:
    """A page that says one thing: a refusal, a missing object, a finished action."""
    return page(
        request,
        "message.html",
        current=current,
        session=session,
        title=title,
        message=message,
        status_code=status_code,
    )
