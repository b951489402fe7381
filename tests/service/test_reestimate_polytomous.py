"""The nightly job re-estimates GRM and GPCM items (issue 18), on SQLite and PostgreSQL.

Students answer through the API from known parameters: the dichotomous items as calibrated,
the GRM and GPCM items from parameters that differ from their live calibration. The staged
draft bundle must carry thresholds and slopes that moved towards the generating ones, and its
promotion must make them the live calibration, exactly as for dichotomous a, b, c.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import select
from test_polytomous_service import ADMIN, create, dichotomous, scored, upload

from qbank.polytomous import category_probabilities
from service.exposure.reestimate import stage_reestimated_bundle
from service.models import ExposureBundle, ItemCalibration, Question

LIVE_STEPS = np.array([-1.0, 0.0, 1.0])
# (reference, model, live a, generating a, generating shift of the thresholds)
SCORED = [
    ("G-1", "GRM", 1.0, 1.8, 0.8),
    ("G-2", "GRM", 1.0, 1.8, -0.8),
    ("G-3", "GRM", 1.0, 1.8, 0.8),
    ("P-1", "GPCM", 1.0, 0.5, -0.8),
    ("P-2", "GPCM", 1.0, 0.5, 0.8),
]
N_DICHOTOMOUS, N_STUDENTS = 5, 240


def _bank(api) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The exam's items published and calibrated; returns the live and the generating
    parameters (question id order, the service's pool order) and the option scores by id."""
    live, truth, scores = [], [], {}
    for ref, model, a, true_a, shift in SCORED:
        qid = create(api, scored(ref, [0, 1, 2, 3]))
        scores[qid] = dict(zip("ABCD", range(4)))
        steps = {f"b{k + 1}": t for k, t in enumerate(LIVE_STEPS)}
        live.append({"item_id": ref, "a": a, "b": 0.0, "c": 0.0, "model": model, **steps})
        true = {f"b{k + 1}": t + shift for k, t in enumerate(LIVE_STEPS)}
        truth.append({"item_id": ref, "a": true_a, "b": shift, "c": 0.0, "model": model, **true})
    for k in range(N_DICHOTOMOUS):
        ref = f"D-{k}"
        qid = create(api, dichotomous(ref))
        scores[qid] = {"A": 1, "B": 0, "C": 0}
        row = {"item_id": ref, "a": 1.2, "b": -1.0 + 0.5 * k, "c": 0.0, "model": "2PL"}
        live.append(row)
        truth.append(row)  # answered as calibrated
    live, truth = pd.DataFrame(live), pd.DataFrame(truth)
    r = upload(api, live)
    assert r.status_code == 200 and r.json()["model"] == "mixed", r.text
    return live.set_index("item_id"), truth.set_index("item_id"), scores


def _answer_from(truth: pd.DataFrame, ref: str, theta: float, rng) -> int:
    row = truth.loc[ref]
    model = {"GRM": 1, "GPCM": 2}.get(row["model"], 0)
    steps = row[["b1", "b2", "b3"]].to_numpy(dtype=float) if model else np.full(3, np.nan)
    p = category_probabilities(theta, row["a"], row["b"], row["c"], 1.0, model, steps)
    p = p[: 4 if model else 2]
    return int(rng.choice(p.size, p=p / p.sum()))


def test_nightly_job_moves_grm_and_gpcm_items_towards_the_generating_parameters(api, session_factory):
    live, truth, scores = _bank(api)
    with session_factory() as session:
        refs = dict(session.execute(select(Question.id, Question.external_ref)).all())
    n_items = len(live)
    rng = np.random.default_rng(20261205)
    for s in range(N_STUDENTS):
        user, theta = f"p{s}", rng.normal()
        # every item in every quiz: each gets N_STUDENTS answers
        quiz = api.post(
            "/v1/quizzes", user=user, json={"filters": {"num_questions": n_items, "mode": "exam"}}
        )
        quiz_id = quiz.json()["quiz_id"]
        for _ in range(n_items):
            qid = api.get(f"/v1/quizzes/{quiz_id}/next", user=user).json()["question_id"]
            score = _answer_from(truth, refs[qid], theta, rng)
            label = next(label for label, s in scores[qid].items() if s == score)
            r = api.post(
                f"/v1/quizzes/{quiz_id}/answers", user=user, json={"question_id": qid, "selected": label}
            )
            assert r.status_code == 200, r.text

    with session_factory() as session:
        out = stage_reestimated_bundle(
            session,
            api.default_tenant,
            "nightly",
            "DEMO-EXAM",
            r_max=1.0,  # every item is in every test
            min_quizzes=30,
            min_responses=200,
            n_examinees=500,
            validation_examinees=1000,
        )
    notes = out["notes"]
    # the GRM items with the dichotomous ones (the GPCM items, whose live values are off, sit
    # out: as anchors they would set the scale), then the GPCM items anchored on all the others
    assert any(n.startswith("GRM and GPCM items re-estimated in two runs") for n in notes), notes
    assert any(n.startswith("recalibrated ") and "(GRM and 2PL, latent N(0, 1))" in n for n in notes), notes
    assert any(
        n.startswith("recalibrated ") and f"(GPCM, {n_items - 2} fixed as anchors)" in n for n in notes
    ), notes
    scored_refs = [ref for ref, *_ in SCORED]
    assert set(scored_refs) <= set(out["recalibrated"]), notes  # none poorly determined

    with session_factory() as session:
        bundle = session.scalars(select(ExposureBundle)).one()
    staged = {item["item_id"]: item for item in bundle.document["items"]}
    for ref, model, _, true_a, _ in SCORED:
        item, want = staged[ref], truth.loc[ref]
        assert item["model"] == model and len(item["thresholds"]) == 3
        steps, true_steps = np.array(item["thresholds"]), want[["b1", "b2", "b3"]].to_numpy(dtype=float)
        # the live thresholds are 0.8 off everywhere: the staged ones at least halve that, and
        # the slope goes most of the way (the prior on log a pulls towards 1)
        assert np.abs(steps - true_steps).mean() < 0.5 * 0.8, (ref, steps, true_steps)
        assert abs(np.log(item["a"] / true_a)) < 0.7 * abs(np.log(live.loc[ref, "a"] / true_a)), (
            ref,
            item["a"],
        )
        assert item["b"] == np.mean(item["thresholds"])

    r = api.post(f"/v1/admin/exposure/bundles/{bundle.id}/promote", **ADMIN)
    assert r.status_code == 200, r.text
    with session_factory() as session:
        current = {
            ref: (row.model, row.a, row.thresholds)
            for ref, row in session.execute(
                select(Question.external_ref, ItemCalibration)
                .join(ItemCalibration, ItemCalibration.question_id == Question.id)
                .where(ItemCalibration.is_current)
            ).all()
        }
    for ref in scored_refs:
        assert current[ref] == (staged[ref]["model"], staged[ref]["a"], staged[ref]["thresholds"])


def test_calibration_runs_one_per_polytomous_family_and_only_items_with_every_category_seen():
    from service.exposure.reestimate import _calibration_runs

    live = pd.DataFrame(
        {
            "ref": ["D-1", "D-2", "G-1", "G-2", "P-1", "P-2", "T-1"],
            "model": ["3PL", "3PL", "GRM", "GRM", "GPCM", "GPCM", "GRM"],
            "c": [0.2, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0],
            "thresholds": [None, None, [-1.0, 0.0, 1.0], [-1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 1.0], [0.3]],
        }
    )
    scores = {"D-1": [0, 1], "D-2": [0, 1], "G-1": [0, 1, 2, 3], "G-2": [0, 1], "P-1": [0, 1, 2, 3]}
    scores |= {"P-2": [0, 1, 2], "T-1": [0, 1]}
    responses = pd.DataFrame(
        [(f"q{k}", ref, s) for ref, seen in scores.items() for k in range(30) for s in seen],
        columns=["person_id", "item_id", "response"],
    )
    counts = responses.groupby("item_id").size()
    notes = []
    runs = _calibration_runs(live, responses, counts, 60, notes)
    assert runs == [("GRM", "3PL", ["D-1", "D-2", "G-1"]), ("GPCM", None, ["P-1", "P-2"])]
    # G-2's category 2 never came; a two-category item would be fitted as dichotomous
    assert notes[0] == (
        "kept 2 GRM/GPCM item(s) at their live calibration: not every score category was observed "
        "in the window (or only two categories): ['G-2', 'T-1']"
    )
    assert notes[1].startswith("GRM and GPCM items re-estimated in two runs")
    # fewer responses than min_responses: nothing free; dichotomous only: one dichotomous run
    assert _calibration_runs(live, responses, counts, 10_000, []) == []
    only_dichotomous = live[live["model"] == "3PL"]
    assert _calibration_runs(only_dichotomous, responses, counts, 60, []) == [("3PL", None, ["D-1", "D-2"])]
    only_gpcm = live[live["model"] != "GRM"].assign(c=0.0)
    assert _calibration_runs(only_gpcm, responses, counts, 60, []) == [
        ("GPCM", "2PL", ["D-1", "D-2", "P-1", "P-2"])
    ]
