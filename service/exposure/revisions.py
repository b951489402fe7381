"""Bundle revisions: every change of K is a new bundle revision, unvalidated until validated.

The bundle revision is the one store of K. A manual change (the scaffold's
``POST /v1/admin/exposure/set`` and ``/exposure/override``, :func:`set_override`) and the
scaffold's heuristic re-estimation (:func:`reestimate_heuristic`) each store a new revision
(:func:`qbank.exposure.derive_revision`) derived from the exam's newest revision that descends
from the active bundle (so successive edits accumulate), or from the active bundle, or, for an
exam without any, from a ``K = 1`` document of its live items; with its parent, author and
reason, status ``unvalidated``. A validation run (:mod:`service.exposure.validation`) simulates
the revision's own rules on fresh simulees; when it passes the revision becomes ``staged`` and can
be promoted.
Promoting an unvalidated revision takes ``force`` and is audited as such.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from qbank.exposure import base_revision, derive_revision
from qbank.pool import ItemPool
from qbank.rules import rules_from_settings
from qbank.stopping import FixedLength
from service.errors import Invalid, NotFound
from service.events import audit
from service.exposure.rules import active_bundle
from service.exposure_models import ExposureBundleInfo
from service.models import ExposureBundle, Question, QuestionPublication, QuestionVersion, QuizSession, utcnow

BASE_R_MAX = 0.25  # r_max of the K = 1 document an exam without a bundle starts from (if reachable)


def _exam_of(session: Session, tenant_id: str, question_id: int, version: int) -> tuple[str, str]:
    """(exam code, bundle item id) of a published question version."""
    row = session.execute(
        select(QuestionPublication.exam_code, Question.external_ref)
        .join(QuestionVersion, QuestionVersion.id == QuestionPublication.question_version_id)
        .join(Question, Question.id == QuestionVersion.question_id)
        .where(
            Question.tenant_id == tenant_id,
            QuestionVersion.question_id == question_id,
            QuestionVersion.version == version,
        )
    ).first()
    if row is None:
        raise NotFound(f"question {question_id} version {version} not found among published versions")
    exam_code, ref = row
    return exam_code, ref or f"question:{question_id}"


def _base_document(session: Session, tenant_id: str, exam_code: str, actor: str) -> dict:
    from service.exposure.checks import _live_items

    live = _live_items(session, tenant_id, exam_code)
    if live.empty:
        raise NotFound(f"exam {exam_code!r} has no published items")
    frame = live[["ref", "a", "b", "c", "D"]].rename(columns={"ref": "item_id"})
    frame = frame.fillna({"a": 1.0, "b": 0.0, "c": 0.0, "D": 1.0})
    pool = ItemPool.from_frame(frame, name=exam_code, source=f"live calibration of {exam_code}")
    lengths = [
        s.get("length", s.get("max_length"))
        for (s,) in session.execute(
            select(QuizSession.stopping).where(
                QuizSession.tenant_id == tenant_id,
                QuizSession.exam_code == exam_code,
                QuizSession.created_at > utcnow() - timedelta(days=7),
            )
        )
    ]
    length = int(pd.Series(lengths).mode().min()) if lengths else 30
    rules = rules_from_settings(stopping=FixedLength(min(length, pool.n_items)))
    return base_revision(
        pool,
        r_max=max(BASE_R_MAX, rules.stopping.max_length / pool.n_items),  # reachable by the pool
        stopping=rules.stopping,
        estimator=rules.estimator,
        author=actor,
        reason=f"no bundle for exam {exam_code!r}: K = 1 for every item",
    )


def parent_revision(session: Session, tenant_id: str, exam_code: str) -> ExposureBundle | None:
    """What a new revision derives from: the newest unvalidated or staged revision made since the
    active bundle was promoted and descending from it, else the active bundle (None: no bundle)."""
    current = active_bundle(session, tenant_id, exam_code)
    query = select(ExposureBundle).where(
        ExposureBundle.tenant_id == tenant_id,
        ExposureBundle.exam_code == exam_code,
        ExposureBundle.parent_id.is_not(None),
        ExposureBundle.status.in_(("unvalidated", "staged")),
    )
    if current is not None:
        query = query.where(ExposureBundle.created_at >= current.promoted_at)
    candidates = session.scalars(query.order_by(ExposureBundle.created_at.desc(), ExposureBundle.id)).all()
    by_id = {b.id: b for b in candidates}
    for candidate in candidates:  # newest first; keep one whose chain reaches the active bundle
        node = candidate
        while node is not None and node.parent_id in by_id:
            node = by_id[node.parent_id]
        if current is None or (node is not None and node.parent_id == current.id):
            return candidate
    return current


def create_revision(
    session: Session, tenant_id: str, actor: str, exam_code: str, sh_p: dict, *, kind: str, reason: str
) -> ExposureBundle:
    """Store a new unvalidated revision with ``sh_p`` ({bundle item id: K or [K per stratum]})
    changed (see the module docstring); audited ``bundle.revision``; no commit."""
    parent = parent_revision(session, tenant_id, exam_code)
    parent_doc = (
        parent.document if parent is not None else _base_document(session, tenant_id, exam_code, actor)
    )
    try:
        document = derive_revision(parent_doc, sh_p, kind=kind, author=actor, reason=reason)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if parent is None:  # the K = 1 root is stored too, so the chain says where K came from
        parent = _store(
            session, tenant_id, actor, exam_code, parent_doc, None, parent_doc["revision"]["reason"]
        )
    revision = _store(session, tenant_id, actor, exam_code, document, parent, reason)
    audit(
        session,
        tenant_id,
        actor,
        "bundle.revision",
        "exposure_bundle",
        revision.id,
        {"parent_id": parent.id, "kind": kind, "reason": reason, "changes": document["revision"]["changes"]},
    )
    return revision


def _store(session, tenant_id, actor, exam_code, document, parent, reason) -> ExposureBundle:
    bundle = ExposureBundle(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        exam_code=exam_code,
        sha256=document["bundle_sha256"],
        schema=document["schema"],
        document=document,
        status="unvalidated",
        created_by=actor,
        created_at=utcnow(),
        parent_id=None if parent is None else parent.id,
        reason=reason,
    )
    session.add(bundle)
    session.flush()
    kind = document["revision"]["kind"]
    session.add(ExposureBundleInfo(bundle_id=bundle.id, source=kind, carries_calibration=False, note=reason))
    return bundle


def _k_of(document: dict | None, ref: str):
    if document is None:
        return 1.0
    return next((item["sh_p"] for item in document["items"] if item["item_id"] == ref), 1.0)


def set_override(
    session: Session,
    tenant_id: str,
    actor: str,
    question_id: int,
    version: int,
    sh_p: float,
    stratum: int | None = None,
) -> dict:
    """A manual change of ``K`` of a question version: a new unvalidated revision; audited
    (``exposure.set``); commits. Without ``stratum`` every stratum takes ``sh_p``.

    Returns
    -------
    dict
        ``{question_id, version, stratum, sh_p, previous, revision_id, status}`` (``previous``:
        the parent revision's value, the stratum's with ``stratum``).
    """
    if not (isinstance(sh_p, (int, float)) and 0.0 <= float(sh_p) <= 1.0):
        raise Invalid(f"sh_p: must be a number in [0, 1], got {sh_p!r}")
    sh_p = float(sh_p)
    exam_code, ref = _exam_of(session, tenant_id, question_id, version)
    parent = parent_revision(session, tenant_id, exam_code)
    old = _k_of(None if parent is None else parent.document, ref)
    if stratum is None:
        previous, new = (old if not isinstance(old, list) else old[0]), sh_p
    else:
        if not isinstance(old, list) or not 0 <= stratum < len(old):
            where = f"in stratum {stratum}" if isinstance(old, list) else "(no conditional bundle holds it)"
            raise Invalid(
                f"stratum: question {question_id} version {version} has no per-stratum sh_p {where}"
            )
        previous, new = old[stratum], [*old[:stratum], sh_p, *old[stratum + 1 :]]
    reason = f"manual sh_p {sh_p} for question {question_id} v{version}" + (
        "" if stratum is None else f" in stratum {stratum}"
    )
    revision = create_revision(session, tenant_id, actor, exam_code, {ref: new}, kind="manual", reason=reason)
    details = {"sh_p": sh_p, "revision": revision.id}
    if stratum is not None:
        details.update(stratum=stratum, previous=previous)
    audit(session, tenant_id, actor, "exposure.set", "question_version", f"{question_id}:{version}", details)
    session.commit()
    return {
        "question_id": question_id,
        "version": version,
        "stratum": stratum,
        "sh_p": sh_p,
        "previous": previous,
        "revision_id": revision.id,
        "status": revision.status,
    }


def reestimate_heuristic(
    session: Session,
    tenant_id: str,
    actor: str,
    *,
    tau: float,
    days: int,
    floor: float,
    ceil: float,
    min_sessions: int = 1,
    exam_code: str = "DEMO-EXAM",
) -> dict:
    """The scaffold's heuristic on exposure rates, as a new unvalidated revision; audited
    (``exposure.reestimate``); commits.

    For every item administered in the exam's quizzes started in the last ``days``, with
    ``P(A_i)`` the share of those quizzes that administered it and ``K_i`` the parent revision's:
    ``K_i <- K_i tau / P(A_i)`` when ``P(A_i) > tau``, else ``K_i (1 + (tau - P(A_i)) / 4)``,
    clipped to ``[floor, ceil]`` (per stratum for a conditional bundle). Under Sympson-Hetter
    ``P(A_i) = K_i P(S_i)``, so the first branch is the Sympson & Hetter (1985) update
    ``tau / P(S_i)`` written with what the service observes.

    Returns
    -------
    dict
        ``{updated, sessions, items: [{question_id, version, exposure_rate, sh_p_old, sh_p_new}],
        revision_id}`` (no revision when nothing changes).
    """
    from service.exposure.checks import _live_items
    from service.exposure.items import _window_exposure

    n_sessions, administered = _window_exposure(session, tenant_id, days, exam_code)
    if n_sessions < min_sessions or n_sessions == 0:
        session.commit()
        return {"updated": 0, "sessions": n_sessions, "items": [], "revision_id": None}
    refs = {
        (int(q), int(v)): r
        for q, v, r in _live_items(session, tenant_id, exam_code)[
            ["question_id", "version", "ref"]
        ].itertuples(index=False)
    }
    parent = parent_revision(session, tenant_id, exam_code)
    changes, new_k = [], {}
    for (question_id, version), n in sorted(administered.items()):
        ref = refs.get((question_id, version))
        if ref is None:
            continue
        rate = n / n_sessions
        old = _k_of(None if parent is None else parent.document, ref)
        values = old if isinstance(old, list) else [old]
        updated = [
            min(max(k * tau / rate if rate > tau else k * (1.0 + (tau - rate) * 0.25), floor), ceil)
            for k in values
        ]
        if any(abs(a - b) > 1e-12 for a, b in zip(updated, values)):
            new_k[ref] = updated if isinstance(old, list) else updated[0]
            changes.append(
                {
                    "question_id": question_id,
                    "version": version,
                    "exposure_rate": rate,
                    "sh_p_old": values[0],
                    "sh_p_new": updated[0],
                }
            )
    revision = None
    if new_k:
        reason = f"heuristic re-estimation (tau {tau}, {days} day(s), {n_sessions} quizzes)"
        revision = create_revision(
            session, tenant_id, actor, exam_code, new_k, kind="heuristic", reason=reason
        )
    audit(
        session,
        tenant_id,
        actor,
        "exposure.reestimate",
        "exam",
        exam_code,
        {
            "tau": tau,
            "days": days,
            "floor": floor,
            "ceil": ceil,
            "sessions": n_sessions,
            "updated": len(changes),
            "mode": "heuristic",
            "revision": None if revision is None else revision.id,
        },
    )
    session.commit()
    return {
        "updated": len(changes),
        "sessions": n_sessions,
        "items": changes,
        "revision_id": None if revision is None else revision.id,
    }
