"""Admin endpoints of exposure administration (see ``service.exposure``): bundles and their
promotion, manual overrides, the daily counters, the audit trail, flags, cohort sizes and the
reports. The scaffold's ``/admin/exposure/items|set|reestimate`` stay in ``routes/admin.py``.

JSON shapes for the admin UI (all times ISO 8601 UTC):

- bundle summary: ``{id, exam_code, status (staged|draft|active|superseded), sha256, schema,
  selector, r_max, test_length, pool_id, n_items, strata, created_at, created_by, promoted_at,
  promoted_by, source (upload|reestimate), carries_calibration, note, validation {n_examinees,
  max_exposure, controlled_max_exposure, tolerance, rmse, bias, overlap_rate, mean_length,
  passed}}``; the detail adds ``document`` and ``history [{at, actor, action, details}]``.
- a refusal is HTTP 422 ``{"detail": "exposure bundle refused, failed check(s) <checks>: <problems>"}``
  with checks among malformed, converged, validation, live_calibration, checksum, consistency.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request, Response, status
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from qbank.exposure import BUNDLE_JSON_SCHEMA
from service import exposure
from service.api.deps import AdminUser, SessionDep, SettingsDep
from service.exposure import BundleRefused, audit, validation
from service.models import utcnow
from service.schemas import Id, Strict, Version

router = APIRouter(prefix="/admin", tags=["exposure administration"])
BundleId = Annotated[str, Path(min_length=1, max_length=64)]
ExamCode = Annotated[str | None, Query(min_length=1, max_length=64)]

_BUNDLE_BODY = {
    "requestBody": {
        "required": True,
        "description": "an exposure bundle (qbank sh writes bundle.json)",
        "content": {
            "application/json": {"schema": {k: v for k, v in BUNDLE_JSON_SCHEMA.items() if k != "$schema"}}
        },
    }
}


class Override(Strict):
    question_id: Id
    version: Version
    sh_p: float = Field(ge=0.0, le=1.0)
    stratum: int | None = Field(
        None, ge=0, le=1000, description="a theta stratum of a conditional bundle; all when omitted"
    )


def parse_bundle(raw: bytes):
    """The uploaded bytes as JSON; a refusal (check ``malformed``) naming line and column otherwise."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BundleRefused(
            ["malformed"], [f"(document): not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from None
    except json.JSONDecodeError as exc:
        raise BundleRefused(
            ["malformed"], [f"(document): not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
        ) from None


@router.post(
    "/exposure/bundles",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_BUNDLE_BODY,
    responses={200: {"description": "the same document was staged before: the stored bundle"}},
)
async def upload_bundle(
    request: Request,
    response: Response,
    user: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    exam_code: str | None = Query(None, min_length=1, max_length=64),
    with_calibration: bool = False,
) -> dict:
    """Check a bundle against the live calibration of ``exam_code`` (default: the service's exam)
    and stage it: 201 with the bundle summary and ``created: true``, or 200 and the stored
    bundle when the same document was uploaded before. ``with_calibration=true``: the bundle's
    parameters become the live calibration when it is promoted."""
    document = parse_bundle(await request.body())
    summary, created = await run_in_threadpool(
        exposure.upload_bundle,
        session,
        user.tenant,
        user.sub,
        document,
        exam_code or settings.exam_code,
        with_calibration=with_calibration,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return {**summary, "created": created}


@router.get("/exposure/bundles")
def list_bundles(
    user: AdminUser,
    session: SessionDep,
    exam_code: ExamCode = None,
    status_: str | None = Query(
        None, alias="status", pattern="^(staged|draft|unvalidated|active|superseded)$"
    ),
) -> list:
    """Bundle summaries, newest first."""
    return exposure.list_bundles(session, user.tenant, exam_code, status_)


@router.get("/exposure/bundles/{bundle_id}")
def bundle_detail(bundle_id: BundleId, user: AdminUser, session: SessionDep) -> dict:
    """A bundle's summary, document and history."""
    return exposure.bundle_detail(session, user.tenant, bundle_id)


@router.get("/quizzes/{quiz_id}/audit")
def audit_quiz(
    quiz_id: Annotated[str, Path(min_length=1, max_length=64)], user: AdminUser, session: SessionDep
) -> dict:
    """Replay a quiz in the core under the rules it pinned: ``identical: true``, or the first
    ``position`` where the record departs from the replay and the ``reason``."""
    return audit.audit_quiz(session, user.tenant, quiz_id)


@router.post("/exposure/bundles/{bundle_id}/promote")
def promote_bundle(bundle_id: BundleId, user: AdminUser, session: SessionDep, force: bool = False) -> dict:
    """Re-check and promote: the bundle revision (its K and rules) is in force for new quizzes,
    atomically; the previous one becomes ``superseded``. An unvalidated revision needs
    ``force=true`` (audited ``bundle.promote_unvalidated``). Returns the bundle summary."""
    return exposure.promote_bundle(session, user.tenant, user.sub, bundle_id, force=force)


@router.post("/exposure/bundles/{bundle_id}/validate", status_code=status.HTTP_202_ACCEPTED)
def validate_revision(
    bundle_id: BundleId,
    request: Request,
    background: BackgroundTasks,
    user: AdminUser,
    session: SessionDep,
    n_examinees: int = Query(validation.VALIDATION_EXAMINEES, ge=1000, le=500_000),
) -> dict:
    """Start validating an unvalidated revision in the background (its own rules on fresh
    simulees); the bundle summary's ``validation_state`` and ``validation_progress`` follow it,
    and a passing revision becomes ``staged``."""
    started = validation.start_validation(session, user.tenant, user.sub, bundle_id)
    background.add_task(validation.run_validation, request.app.state.session_factory, bundle_id, n_examinees)
    return started


@router.post("/exposure/rollback")
def rollback(user: AdminUser, session: SessionDep, settings: SettingsDep, exam_code: ExamCode = None) -> dict:
    """Promote again the bundle that was in force before the current one; returns its summary."""
    return exposure.rollback_bundle(session, user.tenant, user.sub, exam_code or settings.exam_code)


@router.post("/exposure/override")
def override(body: Override, user: AdminUser, session: SessionDep) -> dict:
    """Manual, audited sh_p of a question version (one stratum or all), as a new unvalidated bundle
    revision: ``{question_id, version, stratum, sh_p, previous, revision_id, status}``."""
    return exposure.set_override(
        session, user.tenant, user.sub, body.question_id, body.version, body.sh_p, body.stratum
    )


@router.get("/exposure/drift")
def drift(
    user: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    exam_code: ExamCode = None,
    days: int = Query(7, ge=1, le=365),
    alpha: float = Query(0.01, gt=0, lt=1),
) -> dict:
    """Observed exposure rate per item under the active bundle against the bundle's prediction:
    ``{bundle_id, exam_code, selector, r_max, window_days, quizzes, predicted_examinees, alpha,
    z_critical, limit, n_drifting, n_over_r_max, max_observed, max_predicted, items: [{item_id,
    question_id, version, predicted_rate, observed_rate, quizzes_administered, z, drift,
    over_r_max}]}``."""
    return exposure.exposure_drift(
        session, user.tenant, exam_code or settings.exam_code, days=days, alpha=alpha
    )


@router.get("/exposure/ab-report")
def ab_report(
    user: AdminUser,
    session: SessionDep,
    exam_code: ExamCode = None,
    experiment: Annotated[str | None, Query(max_length=128)] = None,
    days: int = Query(7, ge=1, le=365),
) -> dict:
    """Per cohort: ``{cohort, rules, quizzes, users, finished, mean_final_se, mean_final_theta,
    mean_score, mean_length, max_exposure_rate, test_overlap}`` under ``cohorts``."""
    return exposure.ab_report(session, user.tenant, days=days, exam_code=exam_code, experiment=experiment)


@router.get("/exposure/daily")
def daily(user: AdminUser, session: SessionDep, settings: SettingsDep, day: date | None = None) -> dict:
    """Administrations counted per item on a UTC day (today by default) against the daily cap:
    ``{day, cap, items: [{question_id, version, administrations}]}``."""
    counts = exposure.daily_exposures(session, user.tenant, day)
    return {
        "day": day or utcnow().date(),
        "cap": settings.max_daily_exposures or None,
        "items": [
            {"question_id": q, "version": v, "administrations": n} for (q, v), n in sorted(counts.items())
        ],
    }


@router.get("/exposure/audit")
def audit_trail(user: AdminUser, session: SessionDep, limit: int = Query(100, ge=1, le=10_000)) -> list:
    """Audit entries of bundles, overrides, re-estimations, flags, cohorts and calibrations,
    newest first: ``[{id, at, actor, action, entity_type, entity_id, details}]``."""
    return exposure.audit_trail(session, user.tenant, limit)


@router.get("/flags")
def list_flags(user: AdminUser, session: SessionDep) -> list:
    """``[{key, enabled, value_json, updated_at}]``; set one with ``PUT /v1/admin/flags/{key}``."""
    return exposure.list_flags(session, user.tenant)


@router.get("/cohorts")
def cohort_sizes(
    user: AdminUser,
    session: SessionDep,
    cohort_key: str = Query(exposure.SELECTOR_FLAG, min_length=1, max_length=128),
) -> dict:
    """Users per cohort of ``cohort_key`` (an experiment key; default selector_strategy):
    ``{cohort_key, total, sizes, shares, weights}``."""
    return exposure.cohort_sizes(session, user.tenant, cohort_key)
