"""The nightly re-estimation (``qbank reestimate --mode simulate``): recalibrate from the window's
answers, re-run Sympson-Hetter on the observed population under the active bundle's rules,
validate, and stage the result as a ``draft`` bundle for an admin to promote. (The scaffold's
heuristic makes an unvalidated revision: :mod:`service.exposure.revisions`.)"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from qbank._messages import shown
from qbank.pool import ItemPool
from qbank.rules import rules_from_bundle
from service.events import audit
from service.exposure.bundles import upload_bundle
from service.exposure.checks import _bundle_items_pool, _live_items, add_categories, live_categories
from service.exposure.rules import active_bundle
from service.models import (
    Question,
    QuizSession,
    UserResponse,
    utcnow,
)


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
    """Answers of the window in long form: ``person_id`` (quiz), ``item_id`` (question reference),
    ``response`` (the score awarded: 0/1, or 0 .. m-1 for an item scored in ordered categories)."""
    cutoff = utcnow() - timedelta(days=days)
    rows = session.execute(
        select(UserResponse.quiz_id, Question.external_ref, UserResponse.question_id, UserResponse.score)
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
            "response": [int(r[3]) for r in rows],
        }
    )


def _recalibrate(
    live: pd.DataFrame, responses: pd.DataFrame, min_responses: int, notes: list
) -> tuple[ItemPool, list]:
    """The live pool, re-estimated from ``responses`` for items with at least ``min_responses``
    answers (the others fixed, anchoring the scale: Kim 2006) unless the calibration flags them
    poorly determined; returns the pool and the re-estimated item ids. GRM/GPCM items keep their
    live calibration and anchor the scale with the other fixed items (their category responses
    enter the likelihood); only dichotomous items are re-estimated here."""
    from qbank.calibration import CalibrationError, calibrate

    frame = live[["ref", "a", "b", "c", "D"]].rename(columns={"ref": "item_id"})
    models, steps = live_categories(live)
    add_categories(frame, models, steps)
    live_pool = ItemPool.from_frame(frame, name="live", source="live calibration")
    counts = responses.groupby("item_id").size() if not responses.empty else pd.Series(dtype=int)
    free = sorted(ref for ref in live["ref"] if counts.get(ref, 0) >= min_responses and ref not in steps)
    if steps:
        notes.append(f"{len(steps)} GRM/GPCM item(s) kept their live calibration (fixed as anchors)")
    if not free:
        most = int(counts.max()) if len(counts) else 0
        notes.append(
            f"not enough data to recalibrate: no {'dichotomous ' if steps else ''}item has "
            f"{min_responses} responses in the window "
            f"(most: {most}); Sympson-Hetter re-run on the live calibration"
        )
        return live_pool, []
    model = "3PL" if (live_pool.c > 0).any() else "2PL"
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
    pool = ItemPool.from_frame(pool.to_frame(), name=exam_code, source=exam_code)  # categories kept
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
