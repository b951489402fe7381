"""Reports: the A/B report per cohort, observed exposure against the rates the bundle's own rules
predict (drift), and the audit trail. The exposure rate of an item is the share of quizzes that
administered it (docs/architecture.md)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm
from sqlalchemy import select
from sqlalchemy.orm import Session

from qbank.exposure import (
    noise_tolerance,
)
from qbank.rules import rules_from_bundle
from qbank.simulation import simulate
from service.errors import NotFound
from service.exposure.checks import _bundle_items_pool, _live_items
from service.exposure.rules import active_bundle
from service.exposure_models import ExposureBundleInfo
from service.models import (
    AuditLog,
    ExposureBundle,
    QuizItem,
    QuizSession,
)
from service.quiz_window import window_clauses

PREDICTION_EXAMINEES = 20_000  # simulees behind a bundle's predicted per-item exposure rates
AUDIT_PREFIXES = ("bundle.", "exposure.", "flag.", "cohort.", "calibration.")


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
