"""Exposure administration: what the workbench validated is what students get, and what
students got feeds back into the workbench.

Bundles
    :func:`upload_bundle` checks a bundle with :func:`qbank.exposure.validate_bundle` against
    the *live* calibration of the exam (the same validator ``qbank sh`` and ``qbank simulate``
    use) and stores it ``staged`` (``draft`` when the nightly job made it). :func:`promote_bundle`
    re-checks it and, in one transaction, writes every item's ``sh_p`` (one per theta stratum for
    ``conditional_sympson_hetter``), imports the calibration the bundle carries if any, marks it
    ``active`` (the previous one ``superseded``), records who and when in the audit log and emits
    ``bundle_promoted``. Rollback is promoting the previous bundle (:func:`rollback_bundle`).
Parameters in force
    ``item_exposure_control.sh_p`` (classic) and ``item_exposure_strata`` (per stratum) hold
    ``K``: the active bundle's unless an admin overrode an item since (:func:`set_override`,
    audited). A quiz pins the active bundle and the parameters in force when it starts
    (:func:`pin_exposure`): classic ``K`` through its pool snapshot, per-stratum ``K`` through a
    content-addressed ``exposure_k_sets`` row, so a served sequence replays after any promotion.
Daily cap
    :func:`claim_daily_exposure` counts one administration of an item on the UTC day with a
    single conditional UPSERT (``... ON CONFLICT DO UPDATE ... WHERE administrations < cap``),
    so concurrent requests on any number of instances never serve an item more than ``cap``
    times a day.
Selector flag and cohorts
    The ``selector_strategy`` flag chooses the rule of new adaptive quizzes: ``{"value": rule}``
    for everyone, or weighted variants ``{"variants": {"vanilla": 1, "sympson_hetter": 1},
    "experiment": "sh-rollout"}``; a user's variant comes from a hash of experiment key and user
    id (:func:`assign_variant`) and is stored on first use in ``cohort_assignments``
    (``cohort_key`` = the experiment key), so it never changes for that experiment.
Reports
    :func:`ab_report` (per cohort: quizzes, mean final SE, mean score, max exposure rate, test
    overlap), :func:`exposure_drift` (each item's observed exposure rate under the active bundle
    against the rate the bundle's own rules predict), :func:`exposure_items` (the scaffold's
    listing plus window exposure rate and the bundle's ``sh_p``).
Re-estimation
    :func:`reestimate_heuristic` (the scaffold's rule on exposure rates) and
    :func:`stage_reestimated_bundle` (recalibrate, re-run Sympson-Hetter on the observed
    population, validate, stage a draft) behind ``qbank reestimate``.

The exposure rate of an item is the share of quizzes that administered it (DESIGN.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import date, timedelta

import numpy as np
import pandas as pd
from scipy.stats import norm
from sqlalchemy import distinct, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qbank._messages import shown
from qbank.exposure import (
    BUNDLE_JSON_SCHEMA,
    noise_tolerance,
    validate_bundle,
)
from qbank.pool import ItemPool, PoolError
from qbank.rules import rules_from_bundle
from qbank.selection import RULES
from qbank.simulation import simulate
from service.db import dialect_insert
from service.errors import Conflict, Invalid, NotFound
from service.events import audit, emit
from service.exposure.rules import active_bundle
from service.exposure_models import ExposureBundleInfo, ItemDailyExposure
from service.models import (
    AuditLog,
    CohortAssignment,
    ExposureBundle,
    FeatureFlag,
    ItemCalibration,
    Question,
    QuestionPublication,
    QuestionVersion,
    QuizItem,
    QuizSession,
    UserResponse,
    utcnow,
)
from service.quiz_window import window_clauses

SELECTOR_FLAG = "selector_strategy"
SELECTOR_ALIASES = {"vanilla": "max_info"}
SELECTOR_RULES = RULES
EXPOSURE_RULES = ("sympson_hetter", "conditional_sympson_hetter")
BUNDLE_STATUSES = ("staged", "draft", "unvalidated", "active", "superseded")
# Every reason a bundle is refused falls under one of these checks (named in the refusal).
CHECKS = ("malformed", "converged", "validation", "live_calibration", "checksum", "consistency")
PREDICTION_EXAMINEES = 20_000  # simulees behind a bundle's predicted per-item exposure rates
AUDIT_PREFIXES = ("bundle.", "exposure.", "flag.", "cohort.", "calibration.")


class BundleRefused(Invalid):
    """A bundle that fails a check; ``checks`` names them (see :data:`CHECKS`), ``problems`` says why."""

    def __init__(self, checks: list[str], problems: list[str]):
        self.checks, self.problems = checks, problems
        listed = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        super().__init__(f"exposure bundle refused, failed check(s) {', '.join(checks)}: {listed}")


# ---------------------------------------------------------------------------- live items
def _live_items(session: Session, tenant_id: str, exam_code: str) -> pd.DataFrame:
    """The exam's live question versions with their current calibration, in question-id order.

    Columns ``ref`` (the external reference a bundle's ``item_id`` names, ``question:<id>`` when
    the question has none), ``question_id, version, question_version_id, calibration_id,
    model, a, b, c, D`` (parameters NaN when uncalibrated).
    """
    rows = session.execute(
        select(
            Question.external_ref,
            QuestionVersion.question_id,
            QuestionVersion.version,
            QuestionVersion.id,
            ItemCalibration.id,
            ItemCalibration.model,
            ItemCalibration.a,
            ItemCalibration.b,
            ItemCalibration.c,
            ItemCalibration.D,
        )
        .join(QuestionPublication, QuestionPublication.question_version_id == QuestionVersion.id)
        .join(Question, Question.id == QuestionVersion.question_id)
        .outerjoin(
            ItemCalibration,
            (ItemCalibration.question_version_id == QuestionVersion.id) & ItemCalibration.is_current,
        )
        .where(
            QuestionPublication.tenant_id == tenant_id,
            QuestionPublication.exam_code == exam_code,
            Question.is_deleted.is_(False),
        )
        .order_by(QuestionVersion.question_id)
    ).all()
    frame = pd.DataFrame(
        rows,
        columns=[
            "external_ref",
            "question_id",
            "version",
            "question_version_id",
            "calibration_id",
            "model",
            "a",
            "b",
            "c",
            "D",
        ],
    )
    frame["ref"] = [
        ref if ref else f"question:{qid}" for ref, qid in zip(frame["external_ref"], frame["question_id"])
    ]
    for column in ("a", "b", "c", "D"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame.drop(columns="external_ref")


def _bundle_items_pool(bundle: dict) -> ItemPool:
    """The bundle's own items as a pool (item ids are question references)."""
    items = bundle["items"]
    frame = pd.DataFrame(
        {
            "item_id": [i["item_id"] for i in items],
            "a": [i["a"] for i in items],
            "b": [i["b"] for i in items],
            "c": [i["c"] for i in items],
            "D": [i.get("D", bundle["D"]) for i in items],
        }
    )
    return ItemPool.from_frame(frame, name=bundle["pool"]["id"], source="bundle items")


def _comparison_pool(
    bundle: dict, live: pd.DataFrame, exam_code: str, with_calibration: bool
) -> ItemPool | None:
    """The live pool in the bundle's item order (then the exam's items the bundle lacks), for
    :func:`validate_bundle`. With ``with_calibration`` the shared items take the bundle's
    parameters: only ids and order are compared, since promotion imports the bundle's calibration."""
    by_ref = live.set_index("ref")
    bundle_refs = [item["item_id"] for item in bundle["items"]]
    in_bundle = set(bundle_refs)
    order = [ref for ref in bundle_refs if ref in by_ref.index] + [
        ref for ref in by_ref.index if ref not in in_bundle
    ]
    if not order:
        return None
    frame = by_ref.loc[order, ["a", "b", "c", "D"]].reset_index()
    frame.columns = ["item_id", "a", "b", "c", "D"]
    params = {item["item_id"]: item for item in bundle["items"]}
    shared = frame["item_id"].isin(in_bundle).to_numpy()
    if with_calibration:
        for column in ("a", "b", "c"):
            frame.loc[shared, column] = [params[ref][column] for ref in frame.loc[shared, "item_id"]]
        frame.loc[shared, "D"] = [params[ref].get("D", bundle["D"]) for ref in frame.loc[shared, "item_id"]]
    # Uncalibrated live items (reported separately) compare as provisional items.
    frame = frame.fillna({"a": 1.0, "b": 0.0, "c": 0.0, "D": 1.0})
    return ItemPool.from_frame(frame, name=exam_code, source=f"live calibration of {exam_code}")


def _classify(problem: str) -> str:
    field = problem.split(":", 1)[0]
    if field.startswith("simulation.converged"):
        return "converged"
    if field.startswith("validation."):
        return "validation"
    if field in ("bundle_sha256", "pool.sha256"):
        return "checksum"
    if field == "items" and any(
        phrase in problem
        for phrase in (
            "parameters differ",
            "no entry for pool item",
            "not in the pool",
            "another order",
            "no live calibration",
        )
    ):
        return "live_calibration"
    return "consistency"


def check_against_live(
    session: Session,
    tenant_id: str,
    exam_code: str,
    document,
    *,
    with_calibration: bool = False,
    require_validation: bool = True,
) -> pd.DataFrame:
    """Check a bundle for ``exam_code``: schema, convergence, validation within ``r_max + tolerance``,
    checksums, and agreement with the live calibration (ids, order, parameters; with
    ``with_calibration`` ids and order only). Returns the live items.

    Raises
    ------
    BundleRefused
        Naming the failed check(s) (:data:`CHECKS`) and every problem.
    """
    from jsonschema import Draft202012Validator

    if not isinstance(document, dict):
        raise BundleRefused(
            ["malformed"], [f"(document): must be a JSON object, got {type(document).__name__}"]
        )
    if not Draft202012Validator(BUNDLE_JSON_SCHEMA).is_valid(document):
        raise BundleRefused(["malformed"], validate_bundle(document))
    live = _live_items(session, tenant_id, exam_code)
    if live.empty:
        raise BundleRefused(["live_calibration"], [f"exam_code: exam {exam_code!r} has no published items"])
    problems = []
    uncalibrated = live.loc[live["calibration_id"].isna(), "ref"].tolist()
    if uncalibrated and not with_calibration:
        problems.append(
            f"items: no live calibration for {uncalibrated[:10]}"
            + (f" and {len(uncalibrated) - 10} more" if len(uncalibrated) > 10 else "")
        )
    try:
        pool = _comparison_pool(document, live, exam_code, with_calibration)
    except PoolError as exc:
        pool = None
        problems.append(f"items: {exc}")
    problems += validate_bundle(document, pool, require_validation=require_validation)
    if problems:
        checks = [check for check in CHECKS if any(_classify(p) == check for p in problems)]
        raise BundleRefused(checks, problems)
    return live


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


def _import_bundle_calibration(
    session: Session, tenant_id: str, bundle: ExposureBundle, rows: pd.DataFrame
) -> None:
    doc = bundle.document
    version_ids = [int(v) for v in rows["question_version_id"]]
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
                "model": doc["model"],
                "a": float(item["a"]),
                "b": float(item["b"]),
                "c": float(item["c"]),
                "D": float(item.get("D", doc["D"])),
                "n_respondents": None,
                "source": f"bundle:{bundle.id}",
                "is_current": True,
                "created_at": utcnow(),
            }
            for qid, vid, version, item in zip(
                rows["question_id"], rows["question_version_id"], rows["version"], doc["items"]
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
        _import_bundle_calibration(session, tenant_id, bundle, rows)
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
        )
        .order_by(ExposureBundle.promoted_at.desc())
        .limit(1)
    )
    if previous is None:
        session.rollback()
        raise NotFound(f"exam {exam_code!r} has no earlier bundle to roll back to")
    return promote_bundle(session, tenant_id, actor, previous.id, action="bundle.rollback")


# ---------------------------------------------------------------------------- parameters in force
def _window_exposure(
    session: Session, tenant_id: str, days: int, exam_code: str | None = None
) -> tuple[int, dict]:
    """The window's quizzes (:mod:`service.quiz_window`) and, per (question_id, version), how many
    of them administered it."""
    window = window_clauses(tenant_id, days, exam_code)
    n_quizzes = session.scalar(select(func.count()).select_from(QuizSession).where(*window))
    counts = session.execute(
        select(QuizItem.question_id, QuizItem.version, func.count(distinct(QuizItem.quiz_id)))
        .join(QuizSession, QuizSession.id == QuizItem.quiz_id)
        .where(*window)
        .group_by(QuizItem.question_id, QuizItem.version)
    ).all()
    return int(n_quizzes or 0), {(int(q), int(v)): int(n) for q, v, n in counts}


def exposure_items(session: Session, tenant_id: str, limit: int, days: int = 7) -> list[dict]:
    """Live item versions with the K in force (the active bundle revision's) and their recent exposure.

    Returns
    -------
    list of dict
        Most attempted first: ``question_id, version, topic_id, sh_p`` (classic K of the active
        bundle, 1.0 without one; the first stratum's for a conditional bundle), ``sh_p_strata``
        (per-stratum K of a conditional active bundle, or null), ``bundle_sh_p`` (the active
        bundle's K: a number, a list per stratum, or null when no active bundle holds the item),
        ``pending_sh_p`` and ``overridden`` (K in the exam's newest revision awaiting validation
        or promotion, and whether it differs from the active one), ``recent_attempts`` (answers
        in the window), ``quizzes_administered`` and ``exposure_rate`` (share of the window's
        quizzes that administered the item; null without quizzes), ``window_quizzes``.
    """
    from service.exposure.revisions import parent_revision

    cutoff = utcnow() - timedelta(days=days)
    attempts = (
        select(UserResponse.question_version_id, func.count().label("n"))
        .where(UserResponse.tenant_id == tenant_id, UserResponse.created_at > cutoff)
        .group_by(UserResponse.question_version_id)
        .subquery()
    )
    rows = session.execute(
        select(
            QuestionVersion.question_id,
            QuestionVersion.version,
            QuestionVersion.topic_id,
            Question.external_ref,
            QuestionPublication.exam_code,
            func.coalesce(attempts.c.n, 0).label("recent"),
        )
        .join(Question, Question.id == QuestionVersion.question_id)
        .join(QuestionPublication, QuestionPublication.question_version_id == QuestionVersion.id)
        .where(QuestionPublication.tenant_id == tenant_id)
        .outerjoin(attempts, attempts.c.question_version_id == QuestionVersion.id)
        .order_by(func.coalesce(attempts.c.n, 0).desc(), QuestionVersion.question_id)
        .limit(limit)
    ).all()
    active_k, pending_k = {}, {}
    for exam_code in sorted({r.exam_code for r in rows}):
        bundle = active_bundle(session, tenant_id, exam_code)
        if bundle is not None:
            active_k[exam_code] = {item["item_id"]: item["sh_p"] for item in bundle.document["items"]}
        pending = parent_revision(session, tenant_id, exam_code)
        if pending is not None and pending is not bundle:
            pending_k[exam_code] = {item["item_id"]: item["sh_p"] for item in pending.document["items"]}
    n_quizzes, administered = _window_exposure(session, tenant_id, days)
    session.commit()  # ends the read transaction
    out = []
    for qid, version, topic_id, ref, exam_code, recent in rows:
        ref = ref if ref else f"question:{qid}"
        from_bundle = active_k.get(exam_code, {}).get(ref)
        pending = pending_k.get(exam_code, {}).get(ref)
        in_force = 1.0 if from_bundle is None else from_bundle
        n_administered = administered.get((int(qid), int(version)), 0)
        out.append(
            {
                "question_id": qid,
                "version": version,
                "topic_id": topic_id,
                "sh_p": float(in_force[0] if isinstance(in_force, list) else in_force),
                "sh_p_strata": in_force if isinstance(in_force, list) else None,
                "bundle_sh_p": from_bundle,
                "pending_sh_p": pending,
                "overridden": pending is not None and pending != in_force,
                "recent_attempts": int(recent),
                "quizzes_administered": n_administered,
                "exposure_rate": n_administered / n_quizzes if n_quizzes else None,
                "window_quizzes": n_quizzes,
            }
        )
    return out


# ---------------------------------------------------------------------------- daily cap
_upsert = dialect_insert


def claim_daily_exposure(
    session: Session, tenant_id: str, question_id: int, version: int, cap: int, day: date | None = None
) -> bool:
    """Count one administration of the item on ``day`` (UTC today) unless ``cap`` were counted already.

    One statement, ``INSERT ... ON CONFLICT DO UPDATE SET administrations = administrations + 1
    WHERE administrations < cap RETURNING``: the row lock it takes makes concurrent claims
    apply one after the other, so the count never passes ``cap``. No commit: it is part of the
    serving transaction, and rolls back with it.

    PostgreSQL locks the conflicting row even when the WHERE fails, so a serving transaction
    trying capped items in its own ranking order would hold locks in an order no other shares:
    two quizzes deadlock. The claim therefore runs in a savepoint that a failed claim rolls
    back, releasing its lock; a transaction then holds at most one counter lock, taken last.
    """
    day = day or utcnow().date()
    statement = _upsert(session)(ItemDailyExposure).values(
        question_id=question_id, version=version, day=day, tenant_id=tenant_id, administrations=1
    )
    statement = statement.on_conflict_do_update(
        index_elements=["question_id", "version", "day"],
        set_={"administrations": ItemDailyExposure.administrations + 1},
        where=ItemDailyExposure.administrations < cap,
    ).returning(ItemDailyExposure.administrations)
    connection = session.connection()
    savepoint = connection.dialect.name == "postgresql"  # SQLite has no row locks to release
    if savepoint:
        connection.exec_driver_sql("SAVEPOINT daily_claim")
    claimed = session.execute(statement).first() is not None
    if savepoint and not claimed:
        connection.exec_driver_sql("ROLLBACK TO SAVEPOINT daily_claim")
    return claimed


def capped_today(session: Session, tenant_id: str, cap: int, day: date | None = None) -> set[tuple[int, int]]:
    """The (question_id, version) pairs already served ``cap`` times on ``day`` (UTC today), read
    without locks: the withdrawal loop skips them instead of claiming each in turn."""
    day = day or utcnow().date()
    rows = session.execute(
        select(ItemDailyExposure.question_id, ItemDailyExposure.version).where(
            ItemDailyExposure.tenant_id == tenant_id,
            ItemDailyExposure.day == day,
            ItemDailyExposure.administrations >= cap,
        )
    ).all()
    return {(int(q), int(v)) for q, v in rows}


def daily_exposures(session: Session, tenant_id: str, day: date | None = None) -> dict:
    """Administrations per (question_id, version) counted on ``day`` (UTC today)."""
    day = day or utcnow().date()
    rows = session.execute(
        select(
            ItemDailyExposure.question_id, ItemDailyExposure.version, ItemDailyExposure.administrations
        ).where(ItemDailyExposure.tenant_id == tenant_id, ItemDailyExposure.day == day)
    ).all()
    session.commit()
    return {(int(q), int(v)): int(n) for q, v, n in rows}


# ---------------------------------------------------------------------------- flags and cohorts
def rule_of(value, field: str) -> str:
    rule = SELECTOR_ALIASES.get(value, value)
    if rule not in SELECTOR_RULES:
        allowed = sorted(set(SELECTOR_RULES) | set(SELECTOR_ALIASES))
        raise Invalid(f"{field}: {value!r} is not a selection rule; choose from {allowed}")
    return rule


def check_flag(key: str, value_json: dict) -> None:
    """Validate a flag's value; ``selector_strategy`` takes ``value`` (a rule), ``variants``
    ({rule: weight >= 0}, weights summing to more than 0), ``experiment`` (the cohort key),
    ``k`` (randomesque) and ``n_strata`` (a-stratified).

    Raises
    ------
    Invalid
        Naming the field.
    """
    if key != SELECTOR_FLAG:
        return
    if "value" in value_json:
        rule_of(value_json["value"], "value_json.value")
    if "variants" in value_json:
        variants = value_json["variants"]
        if not isinstance(variants, dict) or not variants:
            raise Invalid(
                'value_json.variants: must be an object {rule: weight}, e.g. {"vanilla": 1, '
                '"sympson_hetter": 1}'
            )
        for name, weight in variants.items():
            rule_of(name, f"value_json.variants.{name}")
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float))
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise Invalid(f"value_json.variants.{name}: weight must be a number >= 0, got {weight!r}")
        if sum(variants.values()) <= 0:
            raise Invalid("value_json.variants: the weights must not all be 0")
    if "experiment" in value_json:
        experiment = value_json["experiment"]
        if not isinstance(experiment, str) or not 1 <= len(experiment) <= 128:
            raise Invalid(f"value_json.experiment: must be a text of 1 to 128 characters, got {experiment!r}")
    for name, low in (("k", 1), ("n_strata", 1)):
        if name in value_json and (not isinstance(value_json[name], int) or value_json[name] < low):
            raise Invalid(f"value_json.{name}: must be an integer >= {low}, got {value_json[name]!r}")


def set_flag(session: Session, tenant_id: str, actor: str, key: str, enabled: bool, value_json: dict) -> dict:
    """Set a feature flag (validated by :func:`check_flag`); audited; commits."""
    check_flag(key, value_json)
    flag = session.get(FeatureFlag, (tenant_id, key))
    if flag is None:
        session.add(FeatureFlag(tenant_id=tenant_id, key=key, enabled=enabled, value_json=value_json))
    else:
        flag.enabled, flag.value_json = enabled, value_json
    audit(
        session,
        tenant_id,
        actor,
        "flag.set",
        "feature_flag",
        key,
        {"enabled": enabled, "value_json": value_json},
    )
    session.commit()
    return {"key": key, "enabled": enabled, "value_json": value_json}


def list_flags(session: Session, tenant_id: str) -> list[dict]:
    """``[{key, enabled, value_json, updated_at}]`` of the tenant, by key."""
    flags = session.scalars(
        select(FeatureFlag).where(FeatureFlag.tenant_id == tenant_id).order_by(FeatureFlag.key)
    ).all()
    session.commit()
    return [
        {"key": f.key, "enabled": f.enabled, "value_json": f.value_json, "updated_at": f.updated_at}
        for f in flags
    ]


def assign_variant(experiment: str, user_id: str, weights: dict) -> str:
    """The variant of ``weights`` a user falls in, from a hash of experiment key and user id.

    ``u`` = the first 8 bytes of ``sha256(experiment + "\\x1f" + user_id)`` as an unsigned
    integer over 2**64, uniform on [0, 1); variants in name order take consecutive shares of
    [0, 1) proportional to their weights. The same inputs give the same variant on any
    instance; another experiment key reshuffles users independently.
    """
    digest = hashlib.sha256(f"{experiment}\x1f{user_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    names = sorted(name for name, weight in weights.items() if weight > 0)
    shares = np.cumsum([float(weights[name]) for name in names])
    return names[min(int(np.searchsorted(shares / shares[-1], u, side="right")), len(names) - 1)]


def _sticky_variant(session: Session, tenant_id: str, user_id: str, experiment: str, variants: dict) -> str:
    row = session.get(CohortAssignment, (tenant_id, user_id, experiment))
    if row is not None:
        return row.cohort_value
    value = assign_variant(experiment, user_id, variants)
    try:
        with session.begin_nested():
            session.add(
                CohortAssignment(
                    tenant_id=tenant_id,
                    user_id=user_id,
                    cohort_key=experiment,
                    cohort_value=value,
                    assigned_at=utcnow(),
                )
            )
    except IntegrityError:  # the same user's other request assigned it first
        value = session.get(
            CohortAssignment, (tenant_id, user_id, experiment), populate_existing=True
        ).cohort_value
    return value


def choose_selector(session: Session, tenant_id: str, user_id: str) -> dict:
    """The selection rule of a user's new adaptive quiz (no commit; may add a cohort row).

    With ``variants`` in the enabled ``selector_strategy`` flag, the user's sticky variant of
    its experiment (``experiment``, default ``selector_strategy``); otherwise the user's
    ``selector_strategy`` cohort, else the flag's ``value``, else ``max_info``.

    Returns
    -------
    dict
        ``rule``, ``source`` (cohort | flag | default | fallback from ...), ``cohort`` (the
        variant or cohort value) and ``experiment`` when a cohort decided, ``k`` / ``n_strata``
        for randomesque / a-stratified.
    """
    flag = session.get(FeatureFlag, (tenant_id, SELECTOR_FLAG))
    options = dict(flag.value_json or {}) if flag is not None and flag.enabled else {}
    config: dict = {}
    if options.get("variants"):
        experiment = options.get("experiment") or SELECTOR_FLAG
        value = _sticky_variant(session, tenant_id, user_id, experiment, options["variants"])
        source = "cohort"
        config.update(cohort=value, experiment=experiment)
    else:
        cohort = session.get(CohortAssignment, (tenant_id, user_id, SELECTOR_FLAG))
        if cohort is not None:
            value, source = cohort.cohort_value, "cohort"
            config.update(cohort=value, experiment=SELECTOR_FLAG)
        elif options.get("value"):
            value, source = options["value"], "flag"
        else:
            value, source = "max_info", "default"
    rule = SELECTOR_ALIASES.get(value, value)
    if rule not in SELECTOR_RULES:
        rule, source = "max_info", f"fallback from unknown {value!r}"
    config = {"rule": rule, "source": source, **config}
    if rule == "randomesque":
        config["k"] = int(options.get("k", 5))
    if rule == "a_stratified":
        config["n_strata"] = int(options.get("n_strata", 4))
    return config


def cohort_sizes(session: Session, tenant_id: str, cohort_key: str = SELECTOR_FLAG) -> dict:
    """How many users each cohort of ``cohort_key`` holds.

    Returns
    -------
    dict
        ``cohort_key, total, sizes {value: users}, shares {value: share}`` and ``weights``
        (the flag's normalised variant weights when its experiment is ``cohort_key``, else null).
    """
    rows = session.execute(
        select(CohortAssignment.cohort_value, func.count())
        .where(CohortAssignment.tenant_id == tenant_id, CohortAssignment.cohort_key == cohort_key)
        .group_by(CohortAssignment.cohort_value)
        .order_by(CohortAssignment.cohort_value)
    ).all()
    flag = session.get(FeatureFlag, (tenant_id, SELECTOR_FLAG))
    session.commit()
    sizes = {value: int(n) for value, n in rows}
    total = sum(sizes.values())
    weights = None
    options = flag.value_json if flag is not None and flag.enabled else {}
    if options.get("variants") and (options.get("experiment") or SELECTOR_FLAG) == cohort_key:
        total_weight = float(sum(options["variants"].values()))
        weights = {name: float(w) / total_weight for name, w in sorted(options["variants"].items())}
    return {
        "cohort_key": cohort_key,
        "total": total,
        "sizes": sizes,
        "shares": {k: n / total for k, n in sizes.items()} if total else {},
        "weights": weights,
    }


# ---------------------------------------------------------------------------- reports
def _overlap(counts: np.ndarray, n_quizzes: int, mean_length: float) -> float | None:
    """Mean share of items two random quizzes have in common:
    ``sum_i n_i (n_i - 1) / (N (N - 1))`` over the mean test length (Chen, Ankenmann & Spray 2003)."""
    if n_quizzes < 2 or mean_length <= 0:
        return None
    counts = counts.astype(float)
    return float((counts * (counts - 1)).sum() / (n_quizzes * (n_quizzes - 1)) / mean_length)


def _cohort_label(selector: dict) -> str:
    if selector.get("cohort"):
        return str(selector["cohort"])
    rule = selector.get("rule", "unknown")
    return "vanilla" if rule == "max_info" else rule


def _finite_or_none(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def ab_report(
    session: Session,
    tenant_id: str,
    *,
    days: int = 7,
    exam_code: str | None = None,
    experiment: str | None = None,
) -> dict:
    """Outcomes per cohort of the window's adaptive quizzes (:mod:`service.quiz_window`).

    Returns
    -------
    dict
        ``window_days, exam_code, experiment`` and ``cohorts``: one row per cohort (the quiz's
        variant or cohort, else its rule with max_info shown as ``vanilla``) with ``cohort,
        rules`` (selection rules its quizzes ran), ``quizzes, users, finished``,
        ``mean_final_se, mean_final_theta, mean_score`` (proportion correct; finished quizzes),
        ``mean_length`` (items administered per quiz with items), ``max_exposure_rate`` (largest
        share of the cohort's quizzes that administered one item) and ``test_overlap``.
    """
    window = [*window_clauses(tenant_id, days, exam_code), QuizSession.adaptive.is_(True)]
    quizzes = pd.DataFrame(
        session.execute(
            select(
                QuizSession.id,
                QuizSession.user_id,
                QuizSession.selector,
                QuizSession.status,
                QuizSession.theta,
                QuizSession.se,
                QuizSession.n_answered,
                QuizSession.n_correct,
                QuizSession.n_served,
            ).where(*window)
        ).all(),
        columns=[
            "quiz_id",
            "user_id",
            "selector",
            "status",
            "theta",
            "se",
            "n_answered",
            "n_correct",
            "n_served",
        ],
    )
    items = pd.DataFrame(
        session.execute(
            select(QuizItem.quiz_id, QuizItem.question_id)
            .join(QuizSession, QuizSession.id == QuizItem.quiz_id)
            .where(*window)
        ).all(),
        columns=["quiz_id", "question_id"],
    )
    session.commit()
    if experiment:
        quizzes = quizzes[[s.get("experiment") == experiment for s in quizzes["selector"]]]
    cohorts = []
    if not quizzes.empty:
        quizzes = quizzes.assign(
            cohort=[_cohort_label(s) for s in quizzes["selector"]],
            rule=[s.get("rule") for s in quizzes["selector"]],
        )
        cohort_of = quizzes.set_index("quiz_id")["cohort"]
        items = items[items["quiz_id"].isin(cohort_of.index)]
        items = items.assign(cohort=cohort_of.loc[items["quiz_id"]].to_numpy())
        for name, group in quizzes.groupby("cohort", sort=True):
            finished = group[group["status"] == "finished"]
            answered = finished[finished["n_answered"] > 0]
            with_items = group[group["n_served"] > 0]
            per_item = items[items["cohort"] == name].groupby("question_id")["quiz_id"].nunique().to_numpy()
            n_with_items = len(with_items)
            mean_length = float(with_items["n_served"].mean()) if n_with_items else 0.0
            cohorts.append(
                {
                    "cohort": name,
                    "rules": sorted(set(group["rule"])),
                    "quizzes": len(group),
                    "users": int(group["user_id"].nunique()),
                    "finished": len(finished),
                    "mean_final_se": _finite_or_none(finished["se"].mean()) if len(finished) else None,
                    "mean_final_theta": _finite_or_none(finished["theta"].mean()) if len(finished) else None,
                    "mean_score": _finite_or_none((answered["n_correct"] / answered["n_answered"]).mean())
                    if len(answered)
                    else None,
                    "mean_length": mean_length if n_with_items else None,
                    "max_exposure_rate": float(per_item.max() / n_with_items) if per_item.size else None,
                    "test_overlap": _overlap(per_item, n_with_items, mean_length),
                }
            )
    return {"window_days": days, "exam_code": exam_code, "experiment": experiment, "cohorts": cohorts}


def predicted_rates(session: Session, bundle: ExposureBundle) -> tuple[dict, int]:
    """Per-item exposure rates the bundle's rules produce on its simulated population, by item
    id, and the simulees behind them: computed once (``qbank.simulate`` with the bundle's
    selector, K, stopping rule and estimator, the validation's seed and theta distribution)
    and stored. No commit."""
    info = session.get(ExposureBundleInfo, bundle.id)
    if info is not None and info.predicted_rates is not None:
        return info.predicted_rates, int(info.predicted_examinees)
    doc = bundle.document
    pool = _bundle_items_pool(doc)
    n_examinees = int(min(doc["validation"]["n_examinees"], PREDICTION_EXAMINEES))
    seed = doc["validation"]["seed"]
    distribution = doc["simulation"]["theta_distribution"]
    settings = rules_from_bundle(doc, pool).simulation_kwargs()
    settings.pop("strata_cuts", None)
    result = simulate(
        pool,
        n_examinees=n_examinees,
        theta_distribution=distribution["name"],
        theta_params=tuple(distribution["params"]),
        rng=seed,
        keep_examinees=False,
        **settings,
    )
    rates = {str(item_id): float(rate) for item_id, rate in zip(pool.item_id, result.exposure_rate)}
    if info is None:
        info = ExposureBundleInfo(bundle_id=bundle.id, source="upload", carries_calibration=False, note="")
        session.add(info)
    info.predicted_rates, info.predicted_examinees, info.predicted_seed = rates, n_examinees, seed
    return rates, n_examinees


def exposure_drift(
    session: Session, tenant_id: str, exam_code: str, *, days: int = 7, alpha: float = 0.01
) -> dict:
    """Observed exposure rate of each item under the active bundle against its predicted rate.

    Observed: share of the window's quizzes (:mod:`service.quiz_window`) that pinned the active
    bundle and ran its selection rule, that administered the item. Predicted: :func:`predicted_rates`.
    An item *drifts* when a two-proportion z-test (pooled) rejects equal rates at family-wise
    level ``alpha`` over the items (Bonferroni); it is *over r_max* when its observed rate
    exceeds ``r_max`` by more than the Monte-Carlo noise of the maximum over the items at the
    cap (:func:`qbank.exposure.noise_tolerance` over the items with some ``K < 1``, 1 - alpha
    confidence, with the bundle's calibration simulees behind K).

    Returns
    -------
    dict
        ``bundle_id, exam_code, selector, r_max, window_days, quizzes, predicted_examinees,
        alpha, z_critical, limit`` (r_max + noise), ``n_drifting, n_over_r_max, max_observed,
        max_predicted`` and ``items`` [{item_id, question_id, version, predicted_rate,
        observed_rate, quizzes_administered, z, drift, over_r_max}] by decreasing ``|z|``.

    Raises
    ------
    NotFound
        When the exam has no active bundle.
    """
    bundle = active_bundle(session, tenant_id, exam_code)
    if bundle is None:
        session.rollback()
        raise NotFound(f"exam {exam_code!r} has no active exposure bundle")
    doc = bundle.document
    rates, n_simulated = predicted_rates(session, bundle)
    window = [*window_clauses(tenant_id, days), QuizSession.exposure_bundle_id == bundle.id]
    pinned = session.execute(select(QuizSession.id, QuizSession.selector).where(*window)).all()
    quiz_ids = [quiz_id for quiz_id, selector in pinned if selector.get("rule") == doc["selector"]]
    served = pd.DataFrame(
        session.execute(
            select(QuizItem.quiz_id, QuizItem.question_id)
            .join(QuizSession, QuizSession.id == QuizItem.quiz_id)
            .where(*window)
        ).all(),
        columns=["quiz_id", "question_id"],
    )
    served = served[served["quiz_id"].isin(set(quiz_ids))]
    counts = served.groupby("question_id")["quiz_id"].nunique().to_dict()
    live = _live_items(session, tenant_id, exam_code).set_index("ref")
    session.commit()  # stores the prediction on first use; ends the transaction
    n_quizzes = len(quiz_ids)
    refs = [item["item_id"] for item in doc["items"]]
    predicted = np.array([rates[ref] for ref in refs])
    # plain dicts: 600 scalar .loc lookups took most of the report's time
    question_of, version_of = live["question_id"].to_dict(), live["version"].to_dict()
    question_ids = [int(question_of[ref]) if ref in question_of else None for ref in refs]
    administered = np.array([counts.get(q, 0) if q is not None else 0 for q in question_ids], dtype=float)
    observed = administered / n_quizzes if n_quizzes else np.full(len(refs), np.nan)
    z_critical = float(norm.ppf(1 - alpha / (2 * len(refs))))
    pooled = (administered + predicted * n_simulated) / (n_quizzes + n_simulated)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.sqrt(pooled * (1 - pooled) * (1 / max(n_quizzes, 1) + 1 / n_simulated))
        z = (
            np.where(scale > 0, (observed - predicted) / scale, 0.0)
            if n_quizzes
            else np.full(len(refs), np.nan)
        )
    r_max = float(doc["r_max"])
    at_cap = max(sum(np.min(item["sh_p"]) < 1 for item in doc["items"]), 1)  # items the bundle controls
    limit = r_max + (
        noise_tolerance(
            r_max, n_quizzes, at_cap, k_examinees=doc["simulation"]["n_examinees"], confidence=1 - alpha
        )
        if n_quizzes
        else math.inf
    )
    items = [
        {
            "item_id": ref,
            "question_id": qid,
            "version": int(version_of[ref]) if ref in version_of else None,
            "predicted_rate": float(p),
            "observed_rate": _finite_or_none(o),
            "quizzes_administered": int(n),
            "z": _finite_or_none(zi),
            "drift": bool(n_quizzes and abs(zi) > z_critical),
            "over_r_max": bool(n_quizzes and o > limit),
        }
        for ref, qid, p, o, n, zi in zip(refs, question_ids, predicted, observed, administered, z)
    ]
    items.sort(key=lambda row: -abs(row["z"] or 0.0))
    return {
        "bundle_id": bundle.id,
        "exam_code": exam_code,
        "selector": doc["selector"],
        "r_max": r_max,
        "window_days": days,
        "quizzes": n_quizzes,
        "predicted_examinees": n_simulated,
        "alpha": alpha,
        "z_critical": z_critical,
        "limit": _finite_or_none(limit),
        "n_drifting": sum(row["drift"] for row in items),
        "n_over_r_max": sum(row["over_r_max"] for row in items),
        "max_observed": _finite_or_none(np.nanmax(observed)) if n_quizzes else None,
        "max_predicted": float(predicted.max()),
        "items": items,
    }


def audit_trail(session: Session, tenant_id: str, limit: int = 100) -> list[dict]:
    """Exposure administration's audit entries, newest first: ``[{id, at, actor, action,
    entity_type, entity_id, details}]`` for bundles, overrides, re-estimations, flags, cohorts
    and calibration imports."""
    condition = AuditLog.action.like(f"{AUDIT_PREFIXES[0]}%")
    for prefix in AUDIT_PREFIXES[1:]:
        condition = condition | AuditLog.action.like(f"{prefix}%")
    rows = session.scalars(
        select(AuditLog)
        .where(AuditLog.tenant_id == tenant_id, condition)
        .order_by(AuditLog.id.desc())
        .limit(limit)
    ).all()
    session.commit()
    return [
        {
            "id": r.id,
            "at": r.created_at,
            "actor": r.actor,
            "action": r.action,
            "entity_type": r.entity_type,
            "entity_id": r.entity_id,
            "details": r.details,
        }
        for r in rows
    ]


# ---------------------------------------------------------------------------- re-estimation
class ReestimateError(Exception):
    """The nightly job could not stage a bundle; the message says why."""


def observed_population(session: Session, tenant_id: str, exam_code: str, days: int) -> dict:
    """Final ability estimates of the exam's finished adaptive quizzes in the window.

    The population's mean is the mean of the EAP estimates; its SD is
    ``sqrt(var(theta_hat) + mean(SE^2))`` (law of total variance: a posterior mean shrinks
    toward the prior by exactly the posterior variance on average).
    """
    cutoff = utcnow() - timedelta(days=days)
    rows = session.execute(
        select(QuizSession.theta, QuizSession.se).where(
            QuizSession.tenant_id == tenant_id,
            QuizSession.exam_code == exam_code,
            QuizSession.created_at > cutoff,
            QuizSession.status == "finished",
            QuizSession.adaptive.is_(True),
        )
    ).all()
    theta = np.array([r[0] for r in rows], dtype=float)
    se = np.array([r[1] for r in rows], dtype=float)
    if theta.size < 2:
        return {"n": int(theta.size), "mean": None, "sd": None}
    return {
        "n": int(theta.size),
        "mean": float(theta.mean()),
        "sd": float(np.sqrt(theta.var(ddof=1) + np.mean(se**2))),
    }


def recent_responses(session: Session, tenant_id: str, exam_code: str, days: int) -> pd.DataFrame:
    """Answers of the window in long form: ``person_id`` (quiz), ``item_id`` (question reference), ``response``."""
    cutoff = utcnow() - timedelta(days=days)
    rows = session.execute(
        select(UserResponse.quiz_id, Question.external_ref, UserResponse.question_id, UserResponse.is_correct)
        .join(QuizSession, QuizSession.id == UserResponse.quiz_id)
        .join(Question, Question.id == UserResponse.question_id)
        .where(
            QuizSession.tenant_id == tenant_id,
            QuizSession.exam_code == exam_code,
            QuizSession.created_at > cutoff,
        )
    ).all()
    return pd.DataFrame(
        {
            "person_id": [r[0] for r in rows],
            "item_id": [ref if ref else f"question:{qid}" for _, ref, qid, _ in rows],
            "response": [int(bool(r[3])) for r in rows],
        }
    )


def _recalibrate(
    live: pd.DataFrame, responses: pd.DataFrame, min_responses: int, notes: list
) -> tuple[ItemPool, list]:
    """The live pool, re-estimated from ``responses`` for items with at least ``min_responses``
    answers (the others fixed, anchoring the scale: Kim 2006) unless the calibration flags them
    poorly determined; returns the pool and the re-estimated item ids."""
    from qbank.calibration import CalibrationError, calibrate

    frame = live[["ref", "a", "b", "c", "D"]].rename(columns={"ref": "item_id"})
    live_pool = ItemPool.from_frame(frame, name="live", source="live calibration")
    counts = responses.groupby("item_id").size() if not responses.empty else pd.Series(dtype=int)
    free = sorted(ref for ref in live["ref"] if counts.get(ref, 0) >= min_responses)
    if not free:
        most = int(counts.max()) if len(counts) else 0
        notes.append(
            f"not enough data to recalibrate: no item has {min_responses} responses in the window "
            f"(most: {most}); Sympson-Hetter re-run on the live calibration"
        )
        return live_pool, []
    model = "3PL" if (live["c"] > 0).any() else "2PL"
    data = responses[responses["item_id"].isin(set(free) | set(live["ref"]))]
    fixed = (
        live_pool.subset(np.flatnonzero(~np.isin(live_pool.item_id, free))) if len(free) < len(live) else None
    )
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = calibrate(data, model, fixed_pool=fixed, format="long", drop_invariant=True)
    except CalibrationError as exc:
        notes.append(f"recalibration failed ({exc}); Sympson-Hetter re-run on the live calibration")
        return live_pool, []
    if not report.summary.get("converged", False):
        notes.append("recalibration did not converge; Sympson-Hetter re-run on the live calibration")
        return live_pool, []
    estimated = report.pool
    by_id = {str(i): k for k, i in enumerate(estimated.item_id)}
    # An estimate the data hardly determine (se_b above the limit, or at a bound) would go live
    # with the bundle; such items keep their live parameters until more responses come in.
    flagged = set(report.items.index[report.items["poorly_determined"]].astype(str))
    re_estimated = [ref for ref in free if ref in by_id and ref not in flagged]
    kept = [ref for ref in free if ref in flagged]
    new = frame.copy()
    for ref in re_estimated:
        k = by_id[ref]
        new.loc[new["item_id"] == ref, ["a", "b", "c", "D"]] = [
            estimated.a[k],
            estimated.b[k],
            estimated.c[k],
            estimated.D[k],
        ]
    notes.append(
        f"recalibrated {len(re_estimated)} item(s) with at least {min_responses} responses ({model}"
        + (f", {fixed.n_items} fixed as anchors" if fixed is not None else ", latent N(0, 1)")
        + ")"
    )
    if kept:
        notes.append(
            f"kept {len(kept)} poorly determined item(s) at their live parameters (se_b > "
            f"{report.summary['se_b_limit']} or at a bound): {shown(kept)}"
        )
    return ItemPool.from_frame(new, name="recalibrated", source="recalibration"), re_estimated


def stage_reestimated_bundle(
    session: Session,
    tenant_id: str,
    actor: str,
    exam_code: str,
    *,
    days: int = 7,
    r_max: float = 0.2,
    min_quizzes: int = 30,
    min_responses: int = 200,
    n_examinees: int = 20_000,
    validation_examinees: int = 50_000,
    seed: int = 0,
    max_iter: int = 50,
    progress: bool = False,
) -> dict:
    """The proper nightly path: recalibrate, re-run Sympson-Hetter on the observed population,
    validate, and stage the result as a ``draft`` bundle for an admin to promote; commits.

    The selector, strata, stopping rule and estimator are the active bundle's (classic
    Sympson-Hetter, EAP and the window's most common fixed test length without one). Items
    with at least ``min_responses`` answers in the window are recalibrated
    (:func:`qbank.calibration.calibrate`), except those it flags ``poorly_determined``, which
    keep their live parameters (a note names them); the theta distribution is normal with the
    observed population's mean and SD (:func:`observed_population`).

    Returns
    -------
    dict
        ``bundle`` (summary of the staged draft), ``recalibrated`` (item ids), ``population``,
        ``iterations``, ``validation_max_exposure``, ``notes``.

    Raises
    ------
    ReestimateError
        Too few finished quizzes, no convergence, or a failed validation.
    """
    from qbank.estimation import EAP
    from qbank.exposure import BundleError, build_bundle, calibrate_exposure, validate_exposure
    from qbank.stopping import FixedLength

    notes: list[str] = []
    live = _live_items(session, tenant_id, exam_code)
    if live.empty:
        raise ReestimateError(f"exam {exam_code!r} has no published items")
    uncalibrated = live.loc[live["calibration_id"].isna(), "ref"].tolist()
    if uncalibrated:
        raise ReestimateError(f"exam {exam_code!r} has items without a live calibration: {uncalibrated[:10]}")
    population = observed_population(session, tenant_id, exam_code, days)
    if population["n"] < min_quizzes:
        raise ReestimateError(
            f"only {population['n']} finished adaptive quiz(zes) of {exam_code!r} in the last "
            f"{days} day(s); at least {min_quizzes} are needed to estimate the population"
        )
    current = active_bundle(session, tenant_id, exam_code)
    if current is not None:
        doc = current.document
        selector_rule = doc["selector"]
        cuts = doc["strata"]["theta_cuts"] if doc["strata"] else None
        rules = rules_from_bundle(doc, _bundle_items_pool(doc))
        stopping, estimator = rules.stopping, rules.estimator
        notes.append(
            f"rules of the active bundle {current.id} ({selector_rule}, test length {doc['test_length']})"
        )
    else:
        lengths = [
            s.get("length", s.get("max_length"))
            for (s,) in session.execute(
                select(QuizSession.stopping).where(
                    QuizSession.tenant_id == tenant_id,
                    QuizSession.exam_code == exam_code,
                    QuizSession.created_at > utcnow() - timedelta(days=days),
                )
            )
        ]
        length = int(pd.Series(lengths).mode().min())
        selector_rule, cuts, stopping, estimator = "sympson_hetter", None, FixedLength(length), EAP()
        notes.append(
            f"no active bundle: classic Sympson-Hetter, EAP, fixed length {length} (the window's most common)"
        )
    responses = recent_responses(session, tenant_id, exam_code, days)
    session.commit()
    pool, re_estimated = _recalibrate(live, responses, min_responses, notes)
    pool = ItemPool.from_frame(
        pd.DataFrame({"item_id": pool.item_id, "a": pool.a, "b": pool.b, "c": pool.c, "D": pool.D}),
        name=exam_code,
        source=exam_code,
    )
    try:
        calibration = calibrate_exposure(
            pool,
            r_max,
            stopping=stopping,
            estimator=estimator,
            strata_cuts=cuts,
            n_examinees=n_examinees,
            max_iter=max_iter,
            theta_distribution="normal",
            theta_params=(population["mean"], population["sd"]),
            rng=seed,
            progress=progress,
        )
    except ValueError as exc:
        raise ReestimateError(f"Sympson-Hetter cannot run: {exc}") from None
    if not calibration.converged:
        raise ReestimateError(f"Sympson-Hetter did not converge: {calibration.message}")
    validation = validate_exposure(
        calibration, n_examinees=validation_examinees, rng=seed + 1, progress=progress
    )
    if not validation.passed:
        raise ReestimateError("validation failed: " + "; ".join(validation.problems))
    try:
        document = json.loads(json.dumps(build_bundle(calibration, validation)))
    except BundleError as exc:
        raise ReestimateError(str(exc)) from None
    summary, _ = upload_bundle(
        session,
        tenant_id,
        actor,
        document,
        exam_code,
        with_calibration=bool(re_estimated),
        status="draft",
        source="reestimate",
        note="; ".join(notes),
    )
    audit(
        session,
        tenant_id,
        actor,
        "exposure.reestimate",
        "exposure_bundle",
        summary["id"],
        {
            "mode": "simulate",
            "days": days,
            "r_max": r_max,
            "population": population,
            "recalibrated": len(re_estimated),
            "iterations": calibration.n_iterations,
        },
    )
    session.commit()
    return {
        "bundle": summary,
        "recalibrated": re_estimated,
        "population": population,
        "iterations": calibration.n_iterations,
        "validation_max_exposure": [float(m) for m in validation.max_exposure],
        "notes": notes,
    }


# The revision model's entry points, under their old names for the routes and the CLI.
from service.exposure.revisions import reestimate_heuristic, set_override  # noqa: E402, F401
