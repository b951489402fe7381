"""Admin pages of exposure administration: bundles (upload, validation report, promote, roll
back, audit trail), the selector flag with its cohorts and A/B report, and the drift report.

Every page calls the same functions as ``service/api/routes/exposure.py`` (``service.exposure``);
refusals are the service's own messages. Changes go through POST forms carrying the page's CSRF
token, and promotion and rollback first show a confirmation page.
"""

from __future__ import annotations

import functools
import math
from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service import admin, exposure
from service.api.deps import SessionDep
from service.api.routes.exposure import parse_bundle
from service.errors import ServiceError
from service.exposure import validation
from service.quiz_window import DEFINITION
from service.ui import figures
from service.ui.admin_pages import SMALL_SAMPLE
from service.ui.rendering import SECURITY_HEADERS, message_page, page
from service.ui.session import CSRF_FIELD, AdminPage, check_csrf

router = APIRouter(include_in_schema=False)

BUNDLE_ACTIONS = (
    "bundle.upload",
    "bundle.promote",
    "bundle.promote_unvalidated",
    "bundle.rollback",
    "bundle.revision",
    "bundle.validate",
    "bundle.validated",
)
# Variants an admin may weigh on the flags page (the three strategies).
SELECTOR_VARIANTS = ("vanilla", "sympson_hetter", "conditional_sympson_hetter")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DRIFT_PAGE_SIZE = 50


def _exam_code(request: Request) -> str:
    return request.app.state.settings.exam_code


def _png(content: bytes) -> Response:
    return Response(
        content, media_type="image/png", headers={**SECURITY_HEADERS, "Content-Type": "image/png"}
    )


def _see(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=status.HTTP_303_SEE_OTHER)


async def _form(request: Request, current) -> dict:
    form = await request.form()
    check_csrf(current, form.get(CSRF_FIELD))
    return form


# ---------------------------------------------------------------------------- bundles
def _bundles_page(
    request: Request, current, session, *, message: str = "", error: str = "", status_code: int = 200
):
    bundles = exposure.list_bundles(session, current.user.tenant)
    audit = [
        entry
        for entry in exposure.audit_trail(session, current.user.tenant, 200)
        if entry["action"] in BUNDLE_ACTIONS
    ][:50]
    can_roll_back = any(
        b["status"] == "superseded" and b["exam_code"] == _exam_code(request) for b in bundles
    )
    return page(
        request,
        "admin_bundles.html",
        current=current,
        session=session,
        bundles=bundles,
        audit=audit,
        exam_code=_exam_code(request),
        message=message,
        error=error,
        can_roll_back=can_roll_back,
        status_code=status_code,
    )


@router.get("/admin/bundles")
def bundles_page(request: Request, current: AdminPage, session: SessionDep, done: str = ""):
    messages = {
        "promoted": "Bundle promoted: its sh_p is now in force.",
        "rolled-back": "Rolled back: the earlier bundle is in force again.",
    }
    return _bundles_page(request, current, session, message=messages.get(done, ""))


@router.post("/admin/bundles")
async def upload_bundle(request: Request, current: AdminPage, session: SessionDep):
    """Multipart form: ``bundle`` (the JSON file), ``exam_code``, ``with_calibration``."""
    form = await _form(request, current)
    upload = form.get("bundle")
    if upload is None or isinstance(upload, str) or not upload.filename:
        return _bundles_page(
            request,
            current,
            session,
            error="Not uploaded: bundle: choose a bundle JSON file.",
            status_code=422,
        )
    raw = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        return _bundles_page(
            request,
            current,
            session,
            status_code=413,
            error=f"Not uploaded: bundle: the file exceeds {MAX_UPLOAD_BYTES // 2**20} MiB.",
        )
    exam_code = (form.get("exam_code") or "").strip() or _exam_code(request)
    try:
        document = parse_bundle(raw)
        summary, created = await run_in_threadpool(
            exposure.upload_bundle,
            session,
            current.user.tenant,
            current.user.sub,
            document,
            exam_code,
            with_calibration=form.get("with_calibration") == "true",
        )
    except ServiceError as exc:
        session.rollback()
        return _bundles_page(
            request, current, session, error=f"Not uploaded: {exc.detail}", status_code=exc.status_code
        )
    return _see(f"/admin/bundles/{summary['id']}?done={'uploaded' if created else 'known'}")


@router.get("/admin/bundles/rollback")
def rollback_confirm(request: Request, current: AdminPage, session: SessionDep):
    exam_code = _exam_code(request)
    bundles = exposure.list_bundles(session, current.user.tenant, exam_code)
    active = next((b for b in bundles if b["status"] == "active"), None)
    # Only bundles that were once in force: a revision superseded while pending never was.
    earlier = sorted(
        (b for b in bundles if b["status"] == "superseded" and b["promoted_at"]),
        key=lambda b: b["promoted_at"],
        reverse=True,
    )
    return page(
        request,
        "admin_confirm.html",
        current=current,
        session=session,
        title="Roll back",
        action="/admin/bundles/rollback",
        button="Roll back",
        question=(
            f"Roll back exam {exam_code}: make bundle {earlier[0]['id'][:8]} "
            f"({earlier[0]['selector']}, r_max {earlier[0]['r_max']}) active again"
            + (f", replacing {active['id'][:8]}" if active else "")
            + "?"
        )
        if earlier
        else f"Exam {exam_code} has no earlier bundle to roll back to.",
        possible=bool(earlier),
        force_label=None,
        cancel="/admin/bundles",
    )


@router.post("/admin/bundles/rollback")
async def rollback(request: Request, current: AdminPage, session: SessionDep):
    await _form(request, current)
    try:
        exposure.rollback_bundle(session, current.user.tenant, current.user.sub, _exam_code(request))
    except ServiceError as exc:
        session.rollback()
        return _bundles_page(
            request, current, session, error=f"Not rolled back: {exc.detail}", status_code=exc.status_code
        )
    return _see("/admin/bundles?done=rolled-back")


def _detail(session, current, bundle_id: str) -> dict:
    return exposure.bundle_detail(session, current.user.tenant, bundle_id)


@router.get("/admin/bundles/{bundle_id}")
def bundle_page(request: Request, bundle_id: str, current: AdminPage, session: SessionDep, done: str = ""):
    try:
        bundle = _detail(session, current, bundle_id)
    except ServiceError as exc:
        return message_page(request, current, session, "Bundle not found", exc.detail, exc.status_code)
    document = bundle["document"]
    messages = {
        "uploaded": "Bundle uploaded: it passed every check and is staged for promotion.",
        "known": "This bundle was uploaded before; here is the stored one.",
    }
    return page(
        request,
        "admin_bundle.html",
        current=current,
        session=session,
        bundle=bundle,
        simulation=document["simulation"],
        validation=document["validation"],
        message=messages.get(done, ""),
    )


@router.get("/admin/bundles/{bundle_id}/{figure}.png")
def bundle_figure(bundle_id: str, figure: str, current: AdminPage, session: SessionDep):
    draw = {
        "convergence": figures.convergence_png,
        "k": figures.k_distribution_png,
        "exposure": figures.exposure_summary_png,
    }.get(figure)
    try:
        bundle = _detail(session, current, bundle_id)
    except ServiceError as exc:
        return Response(exc.detail, status_code=exc.status_code, media_type="text/plain")
    if draw is None:
        return Response(f"no figure {figure!r}", status_code=404, media_type="text/plain")
    return _png(draw(bundle["document"]))


@router.get("/admin/bundles/{bundle_id}/promote")
def promote_confirm(request: Request, bundle_id: str, current: AdminPage, session: SessionDep):
    try:
        bundle = _detail(session, current, bundle_id)
    except ServiceError as exc:
        return message_page(request, current, session, "Bundle not found", exc.detail, exc.status_code)
    return page(
        request,
        "admin_confirm.html",
        current=current,
        session=session,
        title="Promote bundle",
        action=f"/admin/bundles/{bundle_id}/promote",
        button="Promote bundle",
        possible=True,
        question=(
            f"Promote bundle {bundle_id[:8]} ({bundle['selector']}, r_max {bundle['r_max']}, "
            f"{bundle['n_items']} items) for exam {bundle['exam_code']}? Its rules and sh_p are "
            "in force for quizzes started from now on."
            + ("" if bundle["validated"] else " It is an UNVALIDATED revision: no validation run has passed.")
        ),
        force_label=None
        if bundle["validated"]
        else "Promote it unvalidated (recorded in the audit log as a forced promotion)",
        cancel=f"/admin/bundles/{bundle_id}",
    )


@router.post("/admin/bundles/{bundle_id}/promote")
async def promote(request: Request, bundle_id: str, current: AdminPage, session: SessionDep):
    form = await _form(request, current)
    try:
        await run_in_threadpool(
            functools.partial(exposure.promote_bundle, force=form.get("force") == "true"),
            session,
            current.user.tenant,
            current.user.sub,
            bundle_id,
        )
    except ServiceError as exc:
        session.rollback()
        return _bundles_page(
            request, current, session, error=f"Not promoted: {exc.detail}", status_code=exc.status_code
        )
    return _see("/admin/bundles?done=promoted")


@router.post("/admin/bundles/{bundle_id}/validate")
async def validate(
    request: Request, bundle_id: str, background: BackgroundTasks, current: AdminPage, session: SessionDep
):
    """Start a validation run of a revision in the background; its page shows the progress."""
    await _form(request, current)
    try:
        validation.start_validation(session, current.user.tenant, current.user.sub, bundle_id)
    except ServiceError as exc:
        session.rollback()
        return _bundles_page(
            request, current, session, error=f"Not validated: {exc.detail}", status_code=exc.status_code
        )
    background.add_task(validation.run_validation, request.app.state.session_factory, bundle_id)
    return _see(f"/admin/bundles/{bundle_id}")


# ---------------------------------------------------------------------------- flags and cohorts
def _flags_page(
    request: Request,
    current,
    session,
    *,
    message: str = "",
    error: str = "",
    status_code: int = 200,
    entered: dict | None = None,
    entered_experiment: str | None = None,
):
    tenant = current.user.tenant
    flag = next(
        (f for f in exposure.list_flags(session, tenant) if f["key"] == exposure.SELECTOR_FLAG),
        None,
    )
    options = dict(flag["value_json"] or {}) if flag else {}
    experiment = options.get("experiment") or exposure.SELECTOR_FLAG
    # After a refusal the form shows what the admin entered, for correction.
    weights = entered or {name: options.get("variants", {}).get(name, "") for name in SELECTOR_VARIANTS}
    experiment_field = options.get("experiment", "") if entered_experiment is None else entered_experiment
    cohorts = exposure.cohort_sizes(session, tenant, experiment)
    report = exposure.ab_report(session, tenant, days=7, experiment=experiment)
    return page(
        request,
        "admin_flags.html",
        current=current,
        session=session,
        flag=flag,
        options=options,
        experiment=experiment,
        experiment_field=experiment_field,
        weights=weights,
        variants=SELECTOR_VARIANTS,
        cohorts=cohorts,
        report=report,
        window_definition=DEFINITION.format(days=report["window_days"]),
        message=message,
        error=error,
        status_code=status_code,
    )


@router.get("/admin/flags")
def flags_page(request: Request, current: AdminPage, session: SessionDep, done: str = ""):
    return _flags_page(
        request, current, session, message="Saved: the selector_strategy flag." if done else ""
    )


@router.post("/admin/flags")
async def set_selector_flag(request: Request, current: AdminPage, session: SessionDep):
    """Form fields ``weight_<variant>`` (blank: not offered), ``experiment``, ``enabled``."""
    form = await _form(request, current)
    entered = {name: (form.get(f"weight_{name}") or "").strip() for name in SELECTOR_VARIANTS}
    experiment = (form.get("experiment") or "").strip()
    variants = {}
    for name, text in entered.items():
        if text == "":
            continue
        try:
            variants[name] = float(text)
        except ValueError:
            return _flags_page(
                request,
                current,
                session,
                status_code=422,
                entered=entered,
                entered_experiment=experiment,
                error=f"Not saved: weight of {name}: {text!r} is not a number.",
            )
    value_json: dict = {"variants": variants} if variants else {}
    if experiment:
        value_json["experiment"] = experiment
    try:
        admin.set_flag(
            session,
            current.user.tenant,
            current.user.sub,
            exposure.SELECTOR_FLAG,
            form.get("enabled") == "true",
            value_json,
        )
    except ServiceError as exc:
        session.rollback()
        return _flags_page(
            request,
            current,
            session,
            status_code=exc.status_code,
            entered=entered,
            entered_experiment=experiment,
            error=f"Not saved: {exc.detail}",
        )
    return _see("/admin/flags?done=saved")


# ---------------------------------------------------------------------------- drift
def _drift(request: Request, current, session, days: int) -> dict:
    return exposure.exposure_drift(session, current.user.tenant, _exam_code(request), days=days)


@router.get("/admin/drift")
def drift_page(
    request: Request,
    current: AdminPage,
    session: SessionDep,
    days: int = 7,
    only_flagged: bool = False,
    page_number: int = 1,
):
    days = min(max(days, 1), 365)
    context = {"days": days, "only_flagged": only_flagged, "small_sample": SMALL_SAMPLE}
    context["window_definition"] = DEFINITION.format(days=days)
    try:
        report = _drift(request, current, session, days)
    except ServiceError as exc:
        session.rollback()
        return page(
            request,
            "admin_drift.html",
            current=current,
            session=session,
            report=None,
            error=exc.detail,
            rows=[],
            **context,
        )
    rows = [row for row in report["items"] if not only_flagged or row["drift"] or row["over_r_max"]]
    n_pages = max(1, math.ceil(len(rows) / DRIFT_PAGE_SIZE))
    page_number = min(max(1, page_number), n_pages)

    def link(number: int) -> str:
        query = {"days": days, "only_flagged": "true" if only_flagged else "", "page_number": number}
        return "/admin/drift?" + urlencode({k: v for k, v in query.items() if v != ""})

    first = (page_number - 1) * DRIFT_PAGE_SIZE
    return page(
        request,
        "admin_drift.html",
        current=current,
        session=session,
        report=report,
        error="",
        rows=rows[first : first + DRIFT_PAGE_SIZE],
        n_rows=len(rows),
        first_row=first + 1,
        page_number=page_number,
        n_pages=n_pages,
        prev_link=link(page_number - 1) if page_number > 1 else None,
        next_link=link(page_number + 1) if page_number < n_pages else None,
        # r_max plus sampling noise exceeds 1 on few quizzes; a rate cannot
        limit=None if report["limit"] is None else min(max(report["limit"], 0.0), 1.0),
        **context,
    )


@router.get("/admin/drift.png")
def drift_figure(request: Request, current: AdminPage, session: SessionDep, days: int = 7):
    try:
        report = _drift(request, current, session, min(max(days, 1), 365))
    except ServiceError as exc:
        return Response(exc.detail, status_code=exc.status_code, media_type="text/plain")
    return _png(figures.drift_png(report))
