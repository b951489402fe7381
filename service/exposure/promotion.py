"""Promotion of a bundle revision, atomic and audited (an unvalidated revision only with
``force``, audited ``bundle.promote_unvalidated``), with the calibration it carries if any; and
rollback, which promotes the previous one."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from service.calibration import check_categories, item_models
from service.errors import Conflict, Invalid, NotFound
from service.events import audit, emit
from service.exposure.bundles import _bundle, _summary
from service.exposure.checks import BundleRefused, _bundle_items_pool, check_against_live
from service.exposure_models import ExposureBundleInfo
from service.models import (
    ExposureBundle,
    ItemCalibration,
    utcnow,
)


def _import_bundle_calibration(
    session: Session, tenant_id: str, bundle: ExposureBundle, rows: pd.DataFrame
) -> None:
    doc = bundle.document
    version_ids = [int(v) for v in rows["question_version_id"]]
    pool = _bundle_items_pool(doc)  # in the order of doc["items"], as rows are
    check_categories(session, pool, version_ids, f"exposure bundle {bundle.id}")
    models, thresholds = item_models(pool)
    session.execute(
        update(ItemCalibration)
        .where(ItemCalibration.question_version_id.in_(version_ids), ItemCalibration.is_current)
        .values(is_current=False)
    )
    session.execute(
        insert(ItemCalibration),
        [
            {
                "tenant_id": tenant_id,
                "question_id": int(qid),
                "question_version_id": int(vid),
                "version": int(version),
                "model": model,
                "a": float(item["a"]),
                "b": float(item["b"]),
                "c": float(item["c"]),
                "D": float(item.get("D", doc["D"])),
                "thresholds": steps,
                "n_respondents": None,
                "source": f"bundle:{bundle.id}",
                "is_current": True,
                "created_at": utcnow(),
            }
            for qid, vid, version, item, model, steps in zip(
                rows["question_id"],
                rows["question_version_id"],
                rows["version"],
                doc["items"],
                models,
                thresholds,
            )
        ],
    )


def promote_bundle(
    session: Session,
    tenant_id: str,
    actor: str,
    bundle_id: str,
    *,
    action: str = "bundle.promote",
    force: bool = False,
) -> dict:
    """Make a bundle the one in force for its exam, atomically; commits.

    Re-checks it against the live calibration (which may have changed since the upload), then
    in one transaction: imports the calibration it carries (if any), writes every item's
    ``sh_p`` (per stratum when conditional), marks the previously active bundle ``superseded``
    and this one ``active`` with who and when, audits and emits ``bundle_promoted``. Quizzes
    already running keep the bundle they pinned.

    Raises
    ------
    NotFound, Conflict (already active), BundleRefused
    """
    exam_code = _bundle(session, tenant_id, bundle_id).exam_code
    # Lock every bundle of the exam (in id order, no deadlock) before reading any status: two
    # promotions of one exam then apply one after the other, and the second sees the first's
    # result (a fresh statement after the wait; populate_existing refreshes loaded rows).
    session.execute(
        select(ExposureBundle.id)
        .where(ExposureBundle.tenant_id == tenant_id, ExposureBundle.exam_code == exam_code)
        .order_by(ExposureBundle.id)
        .with_for_update()
    ).all()
    fresh = {"populate_existing": True}
    bundle = session.scalar(
        select(ExposureBundle).where(ExposureBundle.id == bundle_id).execution_options(**fresh)
    )
    current = session.scalars(
        select(ExposureBundle)
        .where(
            ExposureBundle.tenant_id == tenant_id,
            ExposureBundle.exam_code == exam_code,
            ExposureBundle.status == "active",
        )
        .execution_options(**fresh)
    ).all()
    if bundle.status == "active":
        session.rollback()
        raise Conflict(f"exposure bundle {bundle_id} is already active for exam {bundle.exam_code!r}")
    unvalidated = bundle.document.get("validation") is None
    if unvalidated and not force:
        session.rollback()
        raise Conflict(
            f"exposure bundle {bundle_id} is an unvalidated revision: run a validation "
            "(POST .../validate) or promote it with force=true"
        )
    if unvalidated:
        action = "bundle.promote_unvalidated"
    info = session.get(ExposureBundleInfo, bundle.id)
    carries = bool(info and info.carries_calibration)
    try:
        live = check_against_live(
            session,
            tenant_id,
            bundle.exam_code,
            bundle.document,
            with_calibration=carries,
            require_validation=not unvalidated,
        )
    except BundleRefused:
        session.rollback()
        raise
    rows = live.set_index("ref").loc[[item["item_id"] for item in bundle.document["items"]]].reset_index()
    if carries:
        try:
            _import_bundle_calibration(session, tenant_id, bundle, rows)
        except Invalid:  # categories that do not fit the items' option scores
            session.rollback()
            raise
    now = utcnow()
    previous = [b.id for b in current]
    for old in current:
        old.status = "superseded"
    bundle.status, bundle.promoted_by, bundle.promoted_at = "active", actor, now
    details = {
        "exam_code": bundle.exam_code,
        "previous_bundle_ids": previous,
        "selector": bundle.document["selector"],
        "r_max": bundle.document["r_max"],
        "n_items": len(rows),
        "sha256": bundle.sha256,
        "imported_calibration": carries,
    }
    audit(session, tenant_id, actor, action, "exposure_bundle", bundle.id, details)
    emit(
        session,
        tenant_id,
        "bundle_promoted",
        "exposure_bundle",
        bundle.id,
        {"bundle_id": bundle.id, "promoted_by": actor, "promoted_at": now.isoformat(), **details},
    )
    session.commit()
    return _summary(bundle, info)


def rollback_bundle(session: Session, tenant_id: str, actor: str, exam_code: str) -> dict:
    """Promote the bundle that was in force before the current one (audited as ``bundle.rollback``).

    Raises
    ------
    NotFound
        When no earlier bundle of the exam was ever active.
    """
    previous = session.scalar(
        select(ExposureBundle)
        .where(
            ExposureBundle.tenant_id == tenant_id,
            ExposureBundle.exam_code == exam_code,
            ExposureBundle.status == "superseded",
            ExposureBundle.promoted_at.is_not(None),  # a revision superseded while pending never was in force
        )
        .order_by(ExposureBundle.promoted_at.desc())
        .limit(1)
    )
    if previous is None:
        session.rollback()
        raise NotFound(f"exam {exam_code!r} has no earlier bundle to roll back to")
    return promote_bundle(session, tenant_id, actor, previous.id, action="bundle.rollback")
