"""The nightly re-estimation (``qbank reestimate --mode simulate``): recalibrate from the window's
answers, re-run Sympson-Hetter on the observed population under the active bundle's rules,
validate, and stage the result as a ``draft`` bundle for an admin to promote. (The scaffold's
heuristic makes an unvalidated revision: :mod:`service.exposure.revisions`.)"""

from __future__ import annotations

import json
import warnings
from datetime import timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from qbank._messages import shown
from qbank.pool import ItemPool, threshold_columns
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


def _calibration_runs(
    live: pd.DataFrame, responses: pd.DataFrame, counts: pd.Series, min_responses: int, notes: list
) -> list[tuple[str, str | None, list]]:
    """The calibration runs of the night as ``(model, dichotomous_model, free item ids)``.

    Items with at least ``min_responses`` answers are free. The calibrator fits one polytomous
    model per run (a dichotomous model beside it), so a pool with free GRM and GPCM items gets
    two runs: the GRM items with the dichotomous ones, then the GPCM items anchored on the rest
    (the first run's estimates included). A GRM/GPCM item stays at its live calibration unless
    the window shows every one of its categories (an unobserved category has no estimate); a
    two-category one too, since a mixed run gives an item scored 0/1 the dichotomous model.
    """
    models, steps = live_categories(live)
    enough = [ref for ref in live["ref"] if counts.get(ref, 0) >= min_responses]
    seen = (
        responses.groupby("item_id")["response"].unique() if not responses.empty else pd.Series(dtype=object)
    )
    unobserved = [
        ref
        for ref in enough
        if ref in steps and (len(steps[ref]) < 2 or set(seen.get(ref, [])) != set(range(len(steps[ref]) + 1)))
    ]
    if unobserved:
        notes.append(
            f"kept {len(unobserved)} GRM/GPCM item(s) at their live calibration: not every score "
            f"category was observed in the window (or only two categories): {shown(unobserved)}"
        )
    dichotomous = [ref for ref in enough if ref not in steps]
    by_family = {
        family: [
            ref for ref in enough if ref not in unobserved and str(models.get(ref, "")).upper() == family
        ]
        for family in ("GRM", "GPCM")
    }
    families = [family for family, refs in by_family.items() if refs]
    dichotomous_model = "3PL" if (live["c"] > 0).any() else "2PL"
    if not families:
        return [(dichotomous_model, None, dichotomous)] if dichotomous else []
    runs = [(families[0], dichotomous_model if dichotomous else None, dichotomous + by_family[families[0]])]
    runs += [(family, None, by_family[family]) for family in families[1:]]
    if len(families) > 1:
        notes.append(
            "GRM and GPCM items re-estimated in two runs (one polytomous model per calibration): "
            "the first without the GPCM items, the second for them, anchored on every other item "
            "at its new or live values"
        )
    return runs


def _recalibrate(
    live: pd.DataFrame, responses: pd.DataFrame, min_responses: int, notes: list
) -> tuple[ItemPool, list]:
    """The live pool, re-estimated from ``responses`` for items with at least ``min_responses``
    answers (the others fixed, anchoring the scale: Kim 2006) unless the calibration flags them
    poorly determined; returns the pool and the re-estimated item ids. GRM/GPCM items follow the
    same rules, their thresholds re-estimated with ``a`` (runs: :func:`_calibration_runs`)."""
    from qbank.calibration import CalibrationError, calibrate

    frame = live[["ref", "a", "b", "c", "D"]].rename(columns={"ref": "item_id"})
    models, steps = live_categories(live)
    add_categories(frame, models, steps)
    live_pool = ItemPool.from_frame(frame, name="live", source="live calibration")
    counts = responses.groupby("item_id").size() if not responses.empty else pd.Series(dtype=int)
    runs = _calibration_runs(live, responses, counts, min_responses, notes)
    if not runs:
        most = int(counts.max()) if len(counts) else 0
        notes.append(
            f"not enough data to recalibrate: no item has {min_responses} responses in the window "
            f"(most: {most}); Sympson-Hetter re-run on the live calibration"
        )
        return live_pool, []
    data = responses[responses["item_id"].isin(set(live["ref"]))]
    threshold_names = threshold_columns(frame)
    new = frame.copy()
    re_estimated, kept = [], []
    later = {ref for _, _, free in runs[1:] for ref in free}
    for model, dichotomous_model, free in runs:
        # Items a later run re-estimates sit out (responses and all): fixed at live values about
        # to change, they would set this run's scale; the later run anchors on this one instead.
        later -= set(free)
        current = ItemPool.from_frame(new, name="live", source="live calibration")
        current = current.subset(np.flatnonzero(~np.isin(current.item_id, list(later))))
        anchors = np.flatnonzero(~np.isin(current.item_id, free))
        fixed = current.subset(anchors) if anchors.size else None
        label = model if dichotomous_model is None else f"{model} and {dichotomous_model}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report = calibrate(
                    data[~data["item_id"].isin(later)],
                    model,
                    dichotomous_model=dichotomous_model,
                    fixed_pool=fixed,
                    format="long",
                    drop_invariant=True,
                )
        except CalibrationError as exc:
            notes.append(f"recalibration ({label}) failed ({exc}); its items keep the live calibration")
            continue
        if not report.summary.get("converged", False):
            notes.append(f"recalibration ({label}) did not converge; its items keep the live calibration")
            continue
        items = report.items
        estimated = set(items.index[~items["fixed"].astype(bool)].astype(str))
        # An estimate the data hardly determine (se_b above the limit, or at a bound) would go live
        # with the bundle; such items keep their live parameters until more responses come in.
        flagged = set(items.index[items["poorly_determined"].astype(bool)].astype(str))
        done = [ref for ref in free if ref in estimated and ref not in flagged]
        kept += [ref for ref in free if ref in flagged]
        for ref in done:
            row = new["item_id"] == ref
            new.loc[row, ["a", "b", "c", "D"]] = items.loc[ref, ["a", "b", "c", "D"]].to_numpy(dtype=float)
            if ref in steps:  # the thresholds in their columns, as the live frame holds them
                new.loc[row, threshold_names] = [
                    float(items.loc[ref, column]) if column in items.columns else np.nan
                    for column in threshold_names
                ]
        re_estimated += done
        notes.append(
            f"recalibrated {len(done)} item(s) with at least {min_responses} responses ({label}"
            + (f", {fixed.n_items} fixed as anchors" if fixed is not None else ", latent N(0, 1)")
            + ")"
        )
    if kept:
        notes.append(
            f"kept {len(kept)} poorly determined item(s) at their live parameters (se_b > "
            f"{report.summary['se_b_limit']} or at a bound): {shown(kept)}"
        )
    if not re_estimated:
        return live_pool, []
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
    keep their live parameters (a note names them); GRM/GPCM items too, ``a`` and thresholds,
    when every score category was observed (one run per polytomous model, see
    :func:`_calibration_runs`); the staged bundle carries the new values and promotion makes
    them the live calibration. The theta distribution is normal with the observed population's
    mean and SD (:func:`observed_population`).

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
