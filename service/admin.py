"""Admin operations: item exposure control (``sh_p``), its re-estimation from served
sessions, selector flags and cohorts.

Re-estimation is one step of Sympson-Hetter's update (Sympson & Hetter 1985; DESIGN.md,
step 4) on the sessions actually served in the window instead of simulees: with
``P(S_i)`` the share of sessions in which item i was *selected* (administered, or withdrawn
by its exposure draw), ``K_i <- tau / P(S_i)`` when ``P(S_i) > tau`` and ``K_i <- ceil``
otherwise, clipped to ``[floor, ceil]``. The validated, simulation-based bundles are the
proper tool; this keeps the scaffold's endpoint honest in between.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from service.errors import Invalid, NotFound
from service.events import audit
from service.models import (
    Question,
    CohortAssignment,
    FeatureFlag,
    ItemExposureControl,
    QuestionPublication,
    QuestionVersion,
    QuizItem,
    QuizSession,
    UserResponse,
    utcnow,
)
from service.pools import pool_view
from service.quizzes import COHORT_RULES, SELECTOR_ALIASES, SELECTOR_FLAG


def exposure_items(session: Session, tenant_id: str, limit: int, days: int = 7) -> list[dict]:
    """Live item versions with their ``sh_p`` (1.0 when unset) and responses in the last ``days``."""
    cutoff = utcnow() - timedelta(days=days)
    attempts = (
        select(UserResponse.question_version_id, func.count().label("n"))
        .where(UserResponse.tenant_id == tenant_id, UserResponse.created_at > cutoff)
        .group_by(UserResponse.question_version_id).subquery()
    )
    live = select(QuestionPublication.question_version_id).where(QuestionPublication.tenant_id == tenant_id)
    rows = session.execute(
        select(QuestionVersion.question_id, QuestionVersion.version, QuestionVersion.topic_id,
               ItemExposureControl.sh_p, func.coalesce(attempts.c.n, 0).label("recent"))
        .where(QuestionVersion.id.in_(live))
        .outerjoin(ItemExposureControl, (ItemExposureControl.question_id == QuestionVersion.question_id)
                   & (ItemExposureControl.version == QuestionVersion.version))
        .outerjoin(attempts, attempts.c.question_version_id == QuestionVersion.id)
        .order_by(func.coalesce(attempts.c.n, 0).desc(), QuestionVersion.question_id)
        .limit(limit)
    ).all()
    session.commit()  # ends the read transaction
    return [{"question_id": q, "version": v, "topic_id": t, "sh_p": 1.0 if sh is None else float(sh),
             "recent_attempts": int(n)} for q, v, t, sh, n in rows]


def _set_sh(session: Session, tenant_id: str, question_id: int, version: int, sh_p: float) -> None:
    row = session.get(ItemExposureControl, (question_id, version))
    if row is None:
        session.add(ItemExposureControl(question_id=question_id, version=version, tenant_id=tenant_id, sh_p=sh_p))
    else:
        row.sh_p = sh_p


def _version_of_tenant(session: Session, tenant_id: str, question_id: int, version: int) -> bool:
    return session.scalar(
        select(QuestionVersion.id).join(Question, Question.id == QuestionVersion.question_id)
        .where(Question.tenant_id == tenant_id, QuestionVersion.question_id == question_id,
               QuestionVersion.version == version)
    ) is not None


def set_sh(session: Session, tenant_id: str, actor: str, question_id: int, version: int, sh_p: float) -> None:
    """Set K_i of a question version of the tenant (new quizzes use it); commits."""
    if not _version_of_tenant(session, tenant_id, question_id, version):
        raise NotFound(f"question {question_id} version {version} not found")
    _set_sh(session, tenant_id, question_id, version, sh_p)
    audit(session, tenant_id, actor, "exposure.set", "question_version", f"{question_id}:{version}", {"sh_p": sh_p})
    session.commit()


def reestimate(session: Session, tenant_id: str, actor: str, *, tau: float, days: int, floor: float, ceil: float,
               min_sessions: int = 1) -> dict:
    """One Sympson-Hetter update of ``sh_p`` from the sessions started in the last ``days``; commits."""
    cutoff = utcnow() - timedelta(days=days)
    window = (QuizSession.tenant_id == tenant_id, QuizSession.created_at > cutoff)
    sessions = session.execute(
        select(QuizSession.pool_snapshot_id, QuizSession.withdrawn).where(*window)
    ).all()
    n_sessions = len(sessions)
    if n_sessions < min_sessions:
        session.commit()
        return {"updated": 0, "sessions": n_sessions, "items": []}
    administered = session.execute(
        select(QuizItem.question_id, QuizItem.version, func.count(distinct(QuizItem.quiz_id)))
        .join(QuizSession, QuizSession.id == QuizItem.quiz_id).where(*window)
        .group_by(QuizItem.question_id, QuizItem.version)
    ).all()
    administrations = {(int(q), int(v)): int(n) for q, v, n in administered}
    selections = dict(administrations)
    withdrawn_by_snapshot: dict[str, list] = {}
    for snapshot_id, withdrawn in sessions:
        if withdrawn:
            withdrawn_by_snapshot.setdefault(snapshot_id, []).extend(withdrawn)
    for snapshot_id, positions in withdrawn_by_snapshot.items():
        view = pool_view(session, snapshot_id)
        counts = np.bincount(np.asarray(positions, dtype=np.intp), minlength=view.n_items)
        for i in np.flatnonzero(counts):
            key = (int(view.question_id[i]), int(view.version[i]))
            selections[key] = selections.get(key, 0) + int(counts[i])
    current = {(r.question_id, r.version): r.sh_p for r in session.scalars(
        select(ItemExposureControl).where(ItemExposureControl.tenant_id == tenant_id))}
    changes = []
    for (question_id, version), n_selected in sorted(selections.items()):
        selection_rate = n_selected / n_sessions
        new = min(max(tau / selection_rate if selection_rate > tau else ceil, floor), ceil)
        old = current.get((question_id, version), 1.0)
        if abs(new - old) > 1e-12:
            _set_sh(session, tenant_id, question_id, version, new)
            changes.append({"question_id": question_id, "version": version, "selection_rate": selection_rate,
                            "exposure_rate": administrations.get((question_id, version), 0) / n_sessions,
                            "sh_p_old": old, "sh_p_new": new})
    audit(session, tenant_id, actor, "exposure.reestimate", "exam", "*",
          {"tau": tau, "days": days, "floor": floor, "ceil": ceil, "sessions": n_sessions, "updated": len(changes)})
    session.commit()
    return {"updated": len(changes), "sessions": n_sessions, "items": changes}


def set_flag(session: Session, tenant_id: str, actor: str, key: str, enabled: bool, value_json: dict) -> None:
    """Set a feature flag; ``selector_strategy`` values must name a selection rule; commits."""
    if key == SELECTOR_FLAG and "value" in value_json:
        _check_rule(value_json["value"], "value_json.value")
    flag = session.get(FeatureFlag, (tenant_id, key))
    if flag is None:
        session.add(FeatureFlag(tenant_id=tenant_id, key=key, enabled=enabled, value_json=value_json))
    else:
        flag.enabled, flag.value_json = enabled, value_json
    audit(session, tenant_id, actor, "flag.set", "feature_flag", key, {"enabled": enabled, "value_json": value_json})
    session.commit()


def assign_cohort(session: Session, tenant_id: str, actor: str, user_id: str, cohort_key: str, cohort_value: str) -> None:
    """Put a user in a cohort (``selector_strategy`` cohorts pick the selection rule); commits."""
    if cohort_key == SELECTOR_FLAG:
        _check_rule(cohort_value, "cohort_value")
    row = session.get(CohortAssignment, (tenant_id, user_id, cohort_key))
    if row is None:
        session.add(CohortAssignment(tenant_id=tenant_id, user_id=user_id, cohort_key=cohort_key,
                                     cohort_value=cohort_value))
    else:
        row.cohort_value = cohort_value
    audit(session, tenant_id, actor, "cohort.assign", "user", user_id, {"key": cohort_key, "value": cohort_value})
    session.commit()


def _check_rule(value, field: str) -> None:
    allowed = sorted(set(COHORT_RULES) | set(SELECTOR_ALIASES))
    if SELECTOR_ALIASES.get(value, value) not in COHORT_RULES:
        raise Invalid(f"{field}: {value!r} is not a selection rule; choose from {allowed}")
