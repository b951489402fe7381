"""Admin operations behind the scaffold's endpoints: item exposure control (``sh_p``), its
re-estimation from served quizzes, selector flags and cohorts.

The work is done in :mod:`service.exposure` (bundles, parameters in force, flags with
weighted variants, reports); these keep the scaffold's signatures for the routes and the
admin UI.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service import exposure
from service.events import audit
from service.exposure import SELECTOR_FLAG, rule_of
from service.models import CohortAssignment


def exposure_items(session: Session, tenant_id: str, limit: int, days: int = 7) -> list[dict]:
    """Live item versions with their ``sh_p`` (1.0 when unset), responses in the last ``days``,
    the window's exposure rate and the active bundle's ``sh_p`` (:func:`exposure.exposure_items`)."""
    return exposure.exposure_items(session, tenant_id, limit, days)


def set_sh(session: Session, tenant_id: str, actor: str, question_id: int, version: int, sh_p: float) -> dict:
    """Set K_i of a question version of the tenant, every stratum included, as a new unvalidated
    bundle revision (in force once validated and promoted); audited; commits."""
    return exposure.set_override(session, tenant_id, actor, question_id, version, sh_p)


def reestimate(
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
    """The scaffold's heuristic on exposure rates (share of the window's quizzes that administered
    each item; :func:`exposure.reestimate_heuristic`); commits."""
    return exposure.reestimate_heuristic(
        session,
        tenant_id,
        actor,
        tau=tau,
        days=days,
        floor=floor,
        ceil=ceil,
        min_sessions=min_sessions,
        exam_code=exam_code,
    )


def set_flag(session: Session, tenant_id: str, actor: str, key: str, enabled: bool, value_json: dict) -> None:
    """Set a feature flag; ``selector_strategy`` values must name selection rules; commits."""
    exposure.set_flag(session, tenant_id, actor, key, enabled, value_json)


def assign_cohort(
    session: Session, tenant_id: str, actor: str, user_id: str, cohort_key: str, cohort_value: str
) -> None:
    """Put a user in a cohort (``selector_strategy`` cohorts pick the selection rule); commits."""
    if cohort_key == SELECTOR_FLAG:
        rule_of(cohort_value, "cohort_value")
    row = session.get(CohortAssignment, (tenant_id, user_id, cohort_key))
    if row is None:
        session.add(
            CohortAssignment(
                tenant_id=tenant_id, user_id=user_id, cohort_key=cohort_key, cohort_value=cohort_value
            )
        )
    else:
        row.cohort_value = cohort_value
    audit(
        session,
        tenant_id,
        actor,
        "cohort.assign",
        "user",
        user_id,
        {"key": cohort_key, "value": cohort_value},
    )
    session.commit()
