"""The admin UI: item exposure control.

The table is what ``GET /v1/admin/exposure/items`` returns (``service.admin.exposure_items``),
labelled with each item's reference, topic and current parameters, then sorted, filtered and
paged for display. An inline edit of ``sh_p`` goes through ``service.admin.set_sh`` with the
API's own request schema (:class:`service.schemas.SetSh`), so the bounds, the tenant check
and the audit entry are the API's.
"""

from __future__ import annotations

import json
import math
from urllib.parse import urlencode

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError

from service import admin
from service.api.deps import SessionDep
from service.errors import ServiceError
from service.quiz_window import DEFINITION
from service.relay.outbox import outbox_lag
from service.schemas import SetSh
from service.ui import queries
from service.ui.rendering import page
from service.ui.session import CSRF_HEADER, AdminPage, check_csrf

router = APIRouter(include_in_schema=False)

WINDOW_DAYS = 7
MAX_ROWS = 10_000  # the API's own ceiling for one listing
PAGE_SIZES = (25, 50, 100)
# A rate from fewer quizzes than this is marked: its standard error can exceed 0.09.
SMALL_SAMPLE = 30
# column key -> header; sortable by that key
COLUMNS = {
    "ref": "Item",
    "version": "Version",
    "topic": "Topic",
    "a": "a",
    "b": "b",
    "c": "c",
    "sh_p": "sh_p",
    "bundle_sh_p": "Bundle sh_p",
    "exposure_rate": f"Exposure rate ({WINDOW_DAYS} d)",
    "recent_attempts": f"Attempts ({WINDOW_DAYS} d)",
}


def _sorted(rows: list[dict], column: str, descending: bool) -> list[dict]:
    """Rows by ``column`` (ties by item reference); rows missing it (an uncalibrated item's
    a, b, c) come last in either direction."""
    present = sorted((r for r in rows if r.get(column) is not None), key=lambda r: r["ref"])
    # A conditional bundle's sh_p is a list per stratum: sorted by its smallest stratum value.
    present.sort(
        key=lambda r: min(r[column]) if isinstance(r[column], list) else r[column], reverse=descending
    )
    return present + sorted((r for r in rows if r.get(column) is None), key=lambda r: r["ref"])


def exposure_rows(session, tenant_id: str) -> list[dict]:
    """The API's exposure listing, each row with ``ref``, ``topic``, ``a, b, c`` and (a GRM/GPCM
    item's) ``model`` and ``thresholds`` added."""
    labels = queries.item_labels(session, tenant_id)
    rows = []
    for row in admin.exposure_items(session, tenant_id, MAX_ROWS, days=WINDOW_DAYS):
        label = labels.get((row["question_id"], row["version"]), {})
        rows.append(
            {
                **row,
                "ref": label.get("ref") or f"Q{row['question_id']}",
                "topic": label.get("topic") or "",
                "a": label.get("a"),
                "b": label.get("b"),
                "c": label.get("c"),
                "model": label.get("model"),
                "thresholds": label.get("thresholds"),
            }
        )
    return rows


@router.get("/admin/outbox")
def outbox_page(request: Request, current: AdminPage, session: SessionDep):
    """The relay's lag: what ``GET /v1/admin/outbox`` returns, for people."""
    lag = outbox_lag(session.connection())
    return page(request, "admin_outbox.html", current=current, session=session, lag=lag)


@router.get("/admin")
def admin_home(current: AdminPage):
    return RedirectResponse("/admin/exposure", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/admin/exposure")
def exposure_page(
    request: Request,
    current: AdminPage,
    session: SessionDep,
    q: str = "",
    topic: str = "",
    controlled: bool = False,
    sort: str = "recent_attempts",
    dir: str = "desc",
    page_number: int = 1,
    per_page: int = 50,
):
    all_rows = exposure_rows(session, current.user.tenant)
    columns = list(COLUMNS)
    sort = sort if sort in columns else "recent_attempts"
    descending = dir != "asc"
    per_page = per_page if per_page in PAGE_SIZES else 50
    topics = sorted({r["topic"] for r in all_rows if r["topic"]})
    needle = q.strip().lower()
    rows = [
        r
        for r in all_rows
        if (not needle or needle in r["ref"].lower() or needle == str(r["question_id"]))
        and (not topic or r["topic"] == topic)
        and (not controlled or r["sh_p"] < 1.0)
    ]
    rows = _sorted(rows, sort, descending)
    n_pages = max(1, math.ceil(len(rows) / per_page))
    page_number = min(max(1, page_number), n_pages)
    shown = rows[(page_number - 1) * per_page : page_number * per_page]
    state = {
        "q": q,
        "topic": topic,
        "controlled": "true" if controlled else "",
        "sort": sort,
        "dir": "desc" if descending else "asc",
        "per_page": per_page,
    }

    def link(**changes) -> str:
        merged = {**state, "page_number": page_number, **changes}
        return "/admin/exposure?" + urlencode({k: v for k, v in merged.items() if v not in ("", None)})

    sort_links = {
        key: link(sort=key, dir="asc" if sort == key and descending else "desc", page_number=1)
        for key in columns
    }
    return page(
        request,
        "admin_exposure.html",
        current=current,
        session=session,
        rows=shown,
        columns=columns,
        headers=COLUMNS,
        state=state,
        topics=topics,
        sort=sort,
        descending=descending,
        sort_links=sort_links,
        page_number=page_number,
        n_pages=n_pages,
        n_rows=len(rows),
        n_total=len(all_rows),
        page_sizes=PAGE_SIZES,
        small_sample=SMALL_SAMPLE,
        window_definition=DEFINITION.format(days=WINDOW_DAYS),
        first_row=(page_number - 1) * per_page + 1,
        prev_link=link(page_number=page_number - 1) if page_number > 1 else None,
        next_link=link(page_number=page_number + 1) if page_number < n_pages else None,
    )


@router.post("/admin/exposure/set")
async def set_sh(request: Request, current: AdminPage, session: SessionDep) -> JSONResponse:
    """JSON ``{question_id, version, sh_p}`` as for ``POST /v1/admin/exposure/set``; CSRF token in a header."""
    check_csrf(current, request.headers.get(CSRF_HEADER))
    try:
        body = SetSh.model_validate(json.loads(await request.body() or b"null"))
    except json.JSONDecodeError:
        return JSONResponse({"detail": "the body must be JSON"}, status_code=400)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": detail}, status_code=422)
    try:
        result = admin.set_sh(
            session, current.user.tenant, current.user.sub, body.question_id, body.version, body.sh_p
        )
    except ServiceError as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    return JSONResponse(
        {
            "ok": True,
            "question_id": body.question_id,
            "version": body.version,
            "sh_p": body.sh_p,
            "revision_id": result["revision_id"],
        }
    )
