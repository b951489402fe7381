"""Admin endpoints: exposure control (the scaffold's three), calibrations, flags, cohorts, users."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Path, Query, UploadFile

from service import admin
from service.api.deps import AdminUser, SessionDep, SettingsDep
from service.calibration import (
    CheckedPool,
    check_against_report,
    import_calibration,
    pool_from_csv_bytes,
    report_items_from_bytes,
)
from service.relay.outbox import outbox_lag
from service.schemas import (
    CalibrationImported,
    CohortSet,
    FlagSet,
    ItemRow,
    OutboxLagOut,
    Reestimate,
    ReestimateOut,
    SetSh,
    UserCreate,
    UserOut,
)
from service.users import create_user

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/outbox", response_model=OutboxLagOut)
def outbox(user: AdminUser, session: SessionDep) -> dict:
    """How far the relay is behind (all tenants: one relay ships the whole outbox): ``backlog``
    unsent events, ``oldest_unsent_age_s`` and ``oldest_unsent_at`` (null when none waits)."""
    return outbox_lag(session.connection()).as_dict()


@router.get("/exposure/items", response_model=list[ItemRow])
def list_items(user: AdminUser, session: SessionDep, limit: int = Query(100, ge=1, le=10_000)) -> list[dict]:
    return admin.exposure_items(session, user.tenant, limit)


@router.post("/exposure/set")
def set_sh(body: SetSh, user: AdminUser, session: SessionDep) -> dict:
    admin.set_sh(session, user.tenant, user.sub, body.question_id, body.version, body.sh_p)
    return {"ok": True}


@router.post("/exposure/reestimate", response_model=ReestimateOut)
def reestimate(body: Reestimate, user: AdminUser, session: SessionDep, settings: SettingsDep) -> dict:
    """The scaffold's heuristic; its K is a new unvalidated bundle revision (``revision_id``)."""
    return admin.reestimate(
        session,
        user.tenant,
        user.sub,
        exam_code=settings.exam_code,
        tau=body.tau,
        days=body.days,
        floor=body.floor,
        ceil=body.ceil,
        min_sessions=body.min_sessions,
    )


@router.post("/calibrations", response_model=CalibrationImported)
def upload_calibration(
    user: AdminUser,
    session: SessionDep,
    file: UploadFile = File(...),
    report: UploadFile | None = File(None),
    poorly_determined: Literal["refuse", "skip", "keep"] = Query("refuse"),
) -> CalibrationImported:
    """Import a pool CSV (item_id = question external_ref, a, b, c, optional D).

    With ``report`` (the ``.report.json`` that ``qbank calibrate`` writes beside the pool) each
    item's respondents are recorded and items it flags poorly determined are refused (422),
    left out (``poorly_determined=skip``) or imported anyway (``keep``), as in the CLI.
    """
    source = file.filename or "upload.csv"
    checked = CheckedPool(pool_from_csv_bytes(file.file.read(), source))
    if report is not None:
        report_name = report.filename or "report.json"
        items = report_items_from_bytes(report.file.read(), report_name)
        checked = check_against_report(checked.pool, items, source, report_name, poorly_determined)
    count = import_calibration(
        session,
        user.tenant,
        user.sub,
        checked.pool,
        source,
        n_respondents=checked.n_respondents,
        details=checked.details,
    )
    return CalibrationImported(
        imported=count,
        source=source,
        model=checked.pool.model,
        skipped=checked.skipped,
        kept_poorly_determined=checked.kept,
    )


@router.put("/flags/{key}")
def set_flag(
    key: Annotated[str, Path(min_length=1, max_length=128)],
    body: FlagSet,
    user: AdminUser,
    session: SessionDep,
) -> dict:
    admin.set_flag(session, user.tenant, user.sub, key, body.enabled, body.value_json)
    return {"ok": True}


@router.put("/cohorts")
def assign_cohort(body: CohortSet, user: AdminUser, session: SessionDep) -> dict:
    admin.assign_cohort(session, user.tenant, user.sub, body.user_id, body.cohort_key, body.cohort_value)
    return {"ok": True}


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(body: UserCreate, user: AdminUser, session: SessionDep) -> UserOut:
    created = create_user(
        session, user.tenant, body.username, body.password, list(body.roles), actor=user.sub
    )
    return UserOut(id=created.id, username=created.username, roles=created.roles, tenant_id=created.tenant_id)
