"""Bundle revisions for an exam: upload (checked against the live calibration, stored ``staged``,
or ``draft`` from the nightly job), list, detail with history, atomic audited promotion (an
unvalidated revision only with ``force``) and rollback. K is never copied out of the revision:
a quiz pins the active one (:mod:`service.exposure.rules`)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import NotFound
from service.events import audit
from service.exposure.checks import check_against_live
from service.exposure_models import ExposureBundleInfo
from service.models import (
    AuditLog,
    ExposureBundle,
    utcnow,
)

BUNDLE_STATUSES = ("staged", "draft", "unvalidated", "active", "superseded")


# ---------------------------------------------------------------------------- bundles
def _summary(bundle: ExposureBundle, info: ExposureBundleInfo | None) -> dict:
    doc = bundle.document
    validation = doc.get("validation")
    return {
        "id": bundle.id,
        "exam_code": bundle.exam_code,
        "status": bundle.status,
        "sha256": bundle.sha256,
        "schema": bundle.schema,
        "selector": doc.get("selector"),
        "r_max": doc.get("r_max"),
        "test_length": doc.get("test_length"),
        "pool_id": doc.get("pool", {}).get("id"),
        "n_items": len(doc.get("items", [])),
        "strata": doc.get("strata"),
        "created_at": bundle.created_at,
        "created_by": bundle.created_by,
        "promoted_at": bundle.promoted_at,
        "promoted_by": bundle.promoted_by,
        "source": info.source if info else "upload",
        "carries_calibration": bool(info.carries_calibration) if info else False,
        "note": info.note if info else "",
        "parent_id": bundle.parent_id,
        "reason": bundle.reason,
        "revision": doc.get("revision"),
        "validated": validation is not None,
        "validation_state": info.validation_state if info else None,
        "validation_progress": info.validation_progress if info else None,
        "validation_message": info.validation_message if info else None,
        "validation": {
            key: (validation or {}).get(key)
            for key in (
                "n_examinees",
                "max_exposure",
                "controlled_max_exposure",
                "tolerance",
                "rmse",
                "bias",
                "overlap_rate",
                "mean_length",
                "passed",
            )
        },
    }


def upload_bundle(
    session: Session,
    tenant_id: str,
    actor: str,
    document,
    exam_code: str,
    *,
    with_calibration: bool = False,
    status: str = "staged",
    source: str = "upload",
    note: str = "",
) -> tuple[dict, bool]:
    """Check and store a bundle for ``exam_code``; commits.

    Parameters
    ----------
    document : dict
        The parsed bundle JSON.
    with_calibration : bool
        The bundle carries a new calibration of its items, imported when it is promoted; its
        parameters may then differ from the live ones (ids and order must still match).
    status : {'staged', 'draft'}

    Returns
    -------
    (dict, bool)
        The bundle summary (see :func:`bundle_detail`) and whether it is new (an identical
        document uploaded before for the exam returns the stored one).

    Raises
    ------
    BundleRefused
        Naming the failed check.
    """
    check_against_live(session, tenant_id, exam_code, document, with_calibration=with_calibration)
    sha = document["bundle_sha256"]
    existing = session.scalar(
        select(ExposureBundle).where(
            ExposureBundle.tenant_id == tenant_id,
            ExposureBundle.exam_code == exam_code,
            ExposureBundle.sha256 == sha,
        )
    )
    if existing is not None:
        info = session.get(ExposureBundleInfo, existing.id)
        session.commit()
        return _summary(existing, info), False
    bundle = ExposureBundle(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        exam_code=exam_code,
        sha256=sha,
        schema=document["schema"],
        document=document,
        status=status,
        created_by=actor,
        created_at=utcnow(),
    )
    info = ExposureBundleInfo(
        bundle_id=bundle.id, source=source, carries_calibration=with_calibration, note=note
    )
    session.add(bundle)
    session.flush()
    session.add(info)
    audit(
        session,
        tenant_id,
        actor,
        "bundle.upload",
        "exposure_bundle",
        bundle.id,
        {
            "exam_code": exam_code,
            "sha256": sha,
            "selector": document["selector"],
            "r_max": document["r_max"],
            "status": status,
            "source": source,
            "carries_calibration": with_calibration,
        },
    )
    session.commit()
    return _summary(bundle, info), True


def list_bundles(
    session: Session, tenant_id: str, exam_code: str | None = None, status: str | None = None
) -> list[dict]:
    """Bundle summaries, newest first (see :func:`bundle_detail` for the fields)."""
    query = (
        select(ExposureBundle, ExposureBundleInfo)
        .outerjoin(ExposureBundleInfo, ExposureBundleInfo.bundle_id == ExposureBundle.id)
        .where(ExposureBundle.tenant_id == tenant_id)
    )
    if exam_code:
        query = query.where(ExposureBundle.exam_code == exam_code)
    if status:
        query = query.where(ExposureBundle.status == status)
    rows = session.execute(query.order_by(ExposureBundle.created_at.desc(), ExposureBundle.id)).all()
    session.commit()
    return [_summary(bundle, info) for bundle, info in rows]


def _bundle(session: Session, tenant_id: str, bundle_id: str) -> ExposureBundle:
    bundle = session.scalar(
        select(ExposureBundle).where(ExposureBundle.id == bundle_id, ExposureBundle.tenant_id == tenant_id)
    )
    if bundle is None:
        raise NotFound(f"exposure bundle {bundle_id} not found")
    return bundle


def bundle_detail(session: Session, tenant_id: str, bundle_id: str) -> dict:
    """One bundle: its summary, the document and its history.

    Returns
    -------
    dict
        ``id, exam_code, status`` (staged | draft | active | superseded), ``sha256, schema,
        selector, r_max, test_length, pool_id, n_items, strata, created_at, created_by,
        promoted_at, promoted_by, source`` (upload | reestimate), ``carries_calibration, note,
        validation`` {n_examinees, max_exposure, controlled_max_exposure, tolerance, rmse, bias,
        overlap_rate, mean_length, passed}, ``document`` (the bundle JSON) and ``history``
        [{at, actor, action, details}] oldest first.
    """
    bundle = _bundle(session, tenant_id, bundle_id)
    info = session.get(ExposureBundleInfo, bundle.id)
    history = session.scalars(
        select(AuditLog)
        .where(
            AuditLog.tenant_id == tenant_id,
            AuditLog.entity_type == "exposure_bundle",
            AuditLog.entity_id == bundle.id,
        )
        .order_by(AuditLog.id)
    ).all()
    session.commit()
    return {
        **_summary(bundle, info),
        "document": bundle.document,
        "history": [
            {"at": h.created_at, "actor": h.actor, "action": h.action, "details": h.details} for h in history
        ],
    }
