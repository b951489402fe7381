"""``qbank reestimate``: the heuristic on exposure rates (SQLite and PostgreSQL) and the simulate
path (recalibrate, Sympson-Hetter on the observed population, validate, stage a draft bundle)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from exposure_support import TENANT, run_students, service_settings
from sqlalchemy import func, select

from qbank.cli.main import cli
from qbank.exposure import validate_bundle
from service import exposure
from service.db import make_engine, make_session_factory, migrate
from service.demo import load_demo
from service.exposure_models import ExposureBundleInfo
from service.models import (
    ExposureBundle,
    ItemCalibration,
    Question,
    QuizItem,
    QuizSession,
)


def reestimate(url, *args):
    result = CliRunner().invoke(cli, ["reestimate", "--db", url, *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def test_heuristic_uses_exposure_rates(db, loaded_bank, session_factory):
    settings = service_settings(db)
    run_students(session_factory, settings, [f"u{i}" for i in range(8)], 3, length=3, tenant=TENANT)
    with session_factory() as session:
        served = pd.DataFrame(
            session.execute(select(QuizItem.quiz_id, QuizItem.question_id)).all(),
            columns=["quiz", "question"],
        )
    rate = served.groupby("question")["quiz"].nunique() / 8
    # K starts at 1: above tau, K = tau / rate; at or below, 1 * (1 + (tau - rate) / 4) capped at 1 (no change).
    expected = {int(q): 0.3 / r for q, r in rate.items() if r > 0.3}
    assert expected and max(rate) == 1.0  # max_info: every quiz starts with the same item

    result = reestimate(db, "--mode", "heuristic", "--tau", "0.3")
    assert result.exit_code == 0, result.output
    assert (
        f"heuristic: 8 quiz(zes) of DEMO-EXAM in the last 7 day(s); {len(expected)} item(s) changed"
        in result.output
    )
    # The new K is an unvalidated bundle revision derived from the exam's K = 1 root, nothing else.
    with session_factory() as session:
        revision = session.scalars(
            select(ExposureBundle).where(ExposureBundle.status == "unvalidated")
        ).all()[-1]
        document, parent = revision.document, session.get(ExposureBundle, revision.parent_id)
    qid_of = {ref: qid for qid, ref in loaded_bank.ref.items()}
    stored = {qid_of[item["item_id"]]: item["sh_p"] for item in document["items"] if item["sh_p"] != 1.0}
    assert stored == pytest.approx(expected)
    assert (document["revision"]["kind"], document["validation"], revision.created_by) == (
        "heuristic",
        None,
        "qbank reestimate",
    )
    assert parent.parent_id is None and all(item["sh_p"] == 1.0 for item in parent.document["items"])
    assert "exposure rate 1.000, sh_p 1.0000 -> 0.3000" in result.output
    assert f"new bundle revision {revision.id} (unvalidated)" in result.output
    assert reestimate(db, "--floor", "0.9", "--ceil", "0.5").exit_code == 2


@pytest.fixture(scope="module")
def served_exam(tmp_path_factory):
    """A 40-item exam (the first demo items) and 240 finished randomesque quizzes of 6 items."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reestimate') / 'qbank.db'}"
    migrate(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session:
        load_demo(session, TENANT, limit=40)
        exposure.set_flag(
            session, TENANT, "root", "selector_strategy", True, {"value": "randomesque", "k": 12}
        )
    # Seeded quiz ids: the randomesque draws, and so which items reach 60 responses, repeat every run.
    run_students(
        factory,
        service_settings(url, quiz_seed=11),
        [f"s{i}" for i in range(240)],
        11,
        length=6,
        tenant=TENANT,
    )
    yield url, factory
    engine.dispose()


SMALL = ["--tau", "0.3", "--examinees", "2000", "--validation-examinees", "4000", "--min-quizzes", "30"]


def test_simulate_stages_a_draft_bundle_on_the_observed_population(served_exam):
    url, factory = served_exam
    with factory() as session:
        quizzes = session.execute(select(QuizSession.theta, QuizSession.se)).all()
        answers = session.execute(
            select(Question.external_ref, func.count())
            .join(QuizItem, QuizItem.question_id == Question.id)
            .group_by(Question.external_ref)
        ).all()
    theta, se = np.array(quizzes).T
    recalibrated = sorted(ref for ref, n in answers if n >= 60)

    result = reestimate(url, "--mode", "simulate", "--min-responses", "60", *SMALL)
    assert result.exit_code == 0, result.output
    # Items the data hardly place keep their live parameters (named in a note when there are any).
    kept = re.search(r"kept (\d+) poorly determined item\(s\) at their live parameters[^\n]*", result.output)
    n_kept = int(kept.group(1)) if kept else 0
    assert (
        f"note: recalibrated {len(recalibrated) - n_kept} item(s) with at least 60 responses (3PL, "
        in result.output
    )
    assert "note: no active bundle: classic Sympson-Hetter, EAP, fixed length 6" in result.output
    assert "population: 240 finished quizzes" in result.output and "staged draft bundle" in result.output
    with factory() as session:
        bundle = session.scalars(select(ExposureBundle)).one()
        info = session.get(ExposureBundleInfo, bundle.id)
        in_force = exposure.active_bundle(session, TENANT, "DEMO-EXAM")
    document = bundle.document
    assert (bundle.status, info.source, info.carries_calibration) == ("draft", "reestimate", True)
    assert validate_bundle(document) == [] and document["r_max"] == 0.3 and document["test_length"] == 6
    # The observed population: mean of the EAP estimates, SD by the law of total variance.
    params = document["simulation"]["theta_distribution"]
    assert params["name"] == "normal"
    assert params["params"] == pytest.approx([theta.mean(), np.sqrt(theta.var(ddof=1) + np.mean(se**2))])
    assert in_force is None  # staged, not promoted

    with factory() as session:
        live_before = dict(
            session.execute(
                select(Question.external_ref, ItemCalibration.a)
                .join(ItemCalibration, ItemCalibration.question_id == Question.id)
                .where(ItemCalibration.is_current)
            ).all()
        )
        exposure.promote_bundle(session, TENANT, "root", bundle.id)
        live_after = dict(
            session.execute(
                select(Question.external_ref, ItemCalibration.a)
                .join(ItemCalibration, ItemCalibration.question_id == Question.id)
                .where(ItemCalibration.is_current)
            ).all()
        )
    by_ref = {item["item_id"]: item for item in document["items"]}
    assert all(live_after[ref] == by_ref[ref]["a"] for ref in live_after)
    changed = sorted(ref for ref in live_after if live_after[ref] != live_before[ref])
    assert set(changed) <= set(recalibrated) and len(changed) == len(recalibrated) - n_kept
    kept_ids = set(re.findall(r"'(DEMO-\d+)'", kept.group(0))) if kept else set()
    assert not kept_ids & set(changed)  # the ones named kept their live parameters


def test_simulate_without_enough_data(served_exam):
    url, factory = served_exam
    result = reestimate(url, "--mode", "simulate", "--min-responses", "100000", "--seed", "5", *SMALL)
    assert result.exit_code == 0, result.output
    assert "note: not enough data to recalibrate: no item has 100000 responses in the window" in result.output
    with factory() as session:
        infos = session.scalars(select(ExposureBundleInfo)).all()
    assert [info.carries_calibration for info in infos if "not enough data" in info.note] == [False]

    result = reestimate(url, "--mode", "simulate", "--min-quizzes", "1000", "--tau", "0.3")
    assert result.exit_code == 1
    assert (
        "no bundle staged: only 240 finished adaptive quiz(zes) of 'DEMO-EXAM' in the last 7 day(s)"
        in result.output
    )
    result = reestimate(
        url, "--mode", "simulate", "--tau", "0.05", "--min-quizzes", "30", "--examinees", "500"
    )
    assert result.exit_code == 1 and "no bundle staged: Sympson-Hetter cannot run" in result.output
