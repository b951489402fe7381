"""Helpers for the exposure-administration tests: bundles of the demo pool computed once per run
with ``qbank.exposure`` (small N), edits that keep a bundle's checksums honest, and simulated
students who take quizzes through the service's own functions (in-process, no HTTP)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import numpy as np
from scipy.special import expit
from sqlalchemy import select

from qbank.estimation import EAP
from qbank.exposure import build_bundle, bundle_sha256, calibrate_exposure, validate_exposure
from qbank.pool import ItemPool, load_pool
from qbank.stopping import FixedLength, StandardError
from service import quizzes
from service.core.config import DEFAULT_TENANT, Settings
from service.core.security import TokenUser
from service.models import QuestionOption, QuestionPublication
from service.pools import pool_view
from service.schemas import AnswerSubmit, QuizCreate

ROOT = Path(__file__).resolve().parents[2]
DEMO_POOL = ROOT / "data" / "demo_pool.csv"
EXAM = "DEMO-EXAM"
TENANT = DEFAULT_TENANT  # the tenant the `loaded_bank` fixture loads
SECRET = "exposure-tests-" + "s" * 40


def service_settings(url: str, **overrides) -> Settings:
    """Settings of a test service on ``url`` (its own secret)."""
    return Settings(database_url=url, env="test", secret_key=SECRET, **overrides)


@cache
def _bundle_json(
    r_max: float,
    length: int,
    cuts: tuple | None,
    n_examinees: int,
    validation_examinees: int,
    method: str = "sympson_hetter",
    se_target: tuple | None = None,
    eap: tuple | None = None,
) -> str:
    pool = load_pool(DEMO_POOL)
    calibration = calibrate_exposure(
        pool,
        r_max,
        method=method,
        stopping=StandardError(*se_target, length) if se_target else FixedLength(length),
        estimator=EAP(*eap) if eap else None,
        n_examinees=n_examinees,
        strata_cuts=list(cuts) if cuts else None,
        rng=0,
    )
    validation = validate_exposure(calibration, n_examinees=validation_examinees, rng=1)
    assert validation.passed, validation.problems
    return json.dumps(build_bundle(calibration, validation))


def demo_bundle(
    r_max: float = 0.25,
    length: int = 5,
    cuts: tuple | None = None,
    n_examinees: int = 4000,
    validation_examinees: int = 8000,
    **rules,
) -> dict:
    """A fresh copy of a validated bundle of the demo pool (computed once per run and settings);
    ``rules``: ``method``, ``se_target`` ((se_target, min_length)) and ``eap`` ((n_points,
    grid_min, grid_max)) for other rules than fixed-length EAP Sympson-Hetter."""
    return json.loads(_bundle_json(r_max, length, cuts, n_examinees, validation_examinees, **rules))


def rehash(bundle: dict) -> dict:
    """Recompute ``bundle_sha256`` (and ``pool.sha256``) after an edit, so that only the edited
    check fails."""
    items = bundle["items"]
    pool = ItemPool.from_arrays(
        [i["a"] for i in items],
        [i["b"] for i in items],
        [i["c"] for i in items],
        [i.get("D", bundle["D"]) for i in items],
        item_id=[i["item_id"] for i in items],
    )
    bundle["pool"]["sha256"] = pool.sha256()
    bundle["bundle_sha256"] = bundle_sha256(bundle)
    return bundle


def edited(bundle: dict, edit) -> dict:
    """A rehashed copy of ``bundle`` after ``edit(copy)``."""
    changed = copy.deepcopy(bundle)
    edit(changed)
    return rehash(changed)


def answer_keys(session, tenant: str, exam_code: str = EXAM) -> dict:
    """{question_id: (correct label, a wrong label)} of the exam's live versions."""
    rows = session.execute(
        select(QuestionPublication.question_id, QuestionOption.option_label, QuestionOption.is_correct)
        .join(QuestionOption, QuestionOption.question_version_id == QuestionPublication.question_version_id)
        .where(QuestionPublication.tenant_id == tenant, QuestionPublication.exam_code == exam_code)
    ).all()
    session.commit()
    keys: dict = {}
    for question_id, label, correct in rows:
        right, wrong = keys.get(question_id, (None, None))
        keys[question_id] = (label if correct else right, wrong if correct or wrong else label)
    return keys


def run_students(
    session_factory, settings, users, rng, *, length: int, tenant: str, exam_code: str = EXAM, theta=None
) -> list[str]:
    """Each user takes one adaptive quiz of ``length`` items through ``service.quizzes``,
    answering by the 3PL with a true theta drawn from N(0, 1) (or ``theta``); returns quiz ids."""
    rng = np.random.default_rng(rng)
    theta = rng.standard_normal(len(users)) if theta is None else np.asarray(theta, dtype=float)
    answers = rng.random((len(users), length))
    body = QuizCreate(filters={"num_questions": length, "exam_code": exam_code, "mode": "exam"})
    quiz_ids = []
    with session_factory() as session:
        keys = answer_keys(session, tenant, exam_code)
        for row, name in enumerate(users):
            user = TokenUser(sub=name, roles=["student"], tenant=tenant)
            quiz, _ = quizzes.start_quiz(session, settings, user, body)
            pool = pool_view(session, quiz.pool_snapshot_id).pool
            for position in range(length):
                item = quizzes.next_item(session, user, quiz.id)
                i = pool.index_of([str(item["question_id"])])[0]
                p = pool.c[i] + (1 - pool.c[i]) * expit(pool.D[i] * pool.a[i] * (theta[row] - pool.b[i]))
                right, wrong = keys[item["question_id"]]
                quizzes.submit_answer(
                    session,
                    user,
                    quiz.id,
                    AnswerSubmit(
                        question_id=item["question_id"],
                        selected=right if answers[row, position] < p else wrong,
                    ),
                )
            quiz_ids.append(quiz.id)
    return quiz_ids
