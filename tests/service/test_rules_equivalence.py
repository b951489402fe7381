"""The service and the simulator are the same CAT (issue 14), on SQLite and PostgreSQL.

Simulated students take quizzes through the real HTTP API under a promoted bundle; the same
students (same true abilities, same response draws, same per-quiz Sympson-Hetter draws: the
quiz id) are then replayed in the core by :func:`qbank.rules.run_test` under
:func:`qbank.rules_from_bundle` of the bundle file on the demo pool, and the item sequences and
the theta and SE after every answer must be identical (``==``, not approximately). Bundles:
classic and conditional Sympson-Hetter, item eligibility, and one with an SE stopping rule and a
non-default EAP grid. The admin audit (endpoint and ``qbank audit-quiz``) replays the same way
and names the first position where a tampered record diverges.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from exposure_support import DEMO_POOL, demo_bundle
from scipy.special import expit
from sqlalchemy import select

from qbank.pool import load_pool
from qbank.rules import rules_from_bundle, run_test
from service.models import QuizItem, UserResponse

ADMIN = {"user": "root", "roles": ["admin"]}
N_STUDENTS = 4

BUNDLES = {
    "classic": lambda: demo_bundle(0.25, 5),
    "conditional": lambda: demo_bundle(0.3, 5, (0.0,)),
    "eligibility": lambda: demo_bundle(0.25, 5, method="item_eligibility"),
    "se_stop_grid": lambda: demo_bundle(0.3, 8, se_target=(0.6, 3), eap=(41, -5.0, 5.0)),
}


def p_correct(pool, i, theta):
    """The students' response model, one function for the service run and the replay."""
    return pool.c[i] + (1.0 - pool.c[i]) * expit(pool.D[i] * pool.a[i] * (theta - pool.b[i]))


def promote(api, bundle):
    r = api.post("/v1/admin/exposure/bundles", json=bundle, **ADMIN)
    assert r.status_code == 201, r.text
    assert api.post(f"/v1/admin/exposure/bundles/{r.json()['id']}/promote", **ADMIN).status_code == 200
    flag = {"value_json": {"value": bundle["selector"]}}
    assert api.put("/v1/admin/flags/selector_strategy", json=flag, **ADMIN).status_code == 200
    return r.json()["id"]


def served_pool(loaded_bank):
    """The demo pool in the service's pool order (question id), named by bundle item id."""
    pool = load_pool(DEMO_POOL)
    return pool.subset(pool.index_of([loaded_bank.ref[q] for q in sorted(loaded_bank.ref)]))


@pytest.mark.parametrize("name", list(BUNDLES))
def test_served_quizzes_replay_identically_in_the_core(name, api, loaded_bank, session_factory):
    bundle = BUNDLES[name]()
    bundle_id = promote(api, bundle)
    pool = served_pool(loaded_bank)
    qid_of = {ref: q for q, ref in loaded_bank.ref.items()}
    rng = np.random.default_rng(14)
    theta = rng.normal(0.0, 1.0, N_STUDENTS)
    draws = rng.random((N_STUDENTS, bundle["stopping"].get("max_length", bundle["test_length"])))

    quiz_ids, reasons = [], []
    for s in range(N_STUDENTS):
        user = f"student{s}"
        r = api.post("/v1/quizzes", user=user, json={"filters": {"num_questions": 40, "mode": "exam"}})
        assert r.status_code == 201, r.text
        quiz_id = r.json()["quiz_id"]
        quiz_ids.append(quiz_id)
        for position in range(40):
            nxt = api.get(f"/v1/quizzes/{quiz_id}/next", user=user)
            if nxt.status_code == 409:
                break
            qid = nxt.json()["question_id"]
            i = pool.index_of([loaded_bank.ref[qid]])[0]
            correct = draws[s, position] < p_correct(pool, i, theta[s])
            label = loaded_bank.key[qid] if correct else loaded_bank.wrong[qid]
            out = api.post(
                f"/v1/quizzes/{quiz_id}/answers", user=user, json={"question_id": qid, "selected": label}
            )
            assert out.status_code == 200, out.text
            if out.json()["quiz_finished"]:
                break
        summary = api.get(f"/v1/quizzes/{quiz_id}", user=user).json()
        assert summary["status"] == "finished"
        reasons.append(summary["finish_reason"])
        rules_seen = summary["rules"]
        assert rules_seen["bundle_id"] == bundle_id and rules_seen["k_from_bundle"] is True
        assert (rules_seen["estimator"], rules_seen["stopping"]) == (bundle["estimator"], bundle["stopping"])

    # The same students in the core: the bundle's rules on the same pool, nothing from the service.
    rules = rules_from_bundle(bundle, pool)
    with session_factory() as session:
        for s, quiz_id in enumerate(quiz_ids):
            record = run_test(
                rules,
                pool,
                quiz_id,
                lambda position, i, s=s: bool(draws[s, position] < p_correct(pool, i, theta[s])),
            )
            served = session.scalars(
                select(QuizItem.question_id).where(QuizItem.quiz_id == quiz_id).order_by(QuizItem.position)
            ).all()
            answers = session.execute(
                select(UserResponse.theta_after, UserResponse.se_after)
                .where(UserResponse.quiz_id == quiz_id)
                .order_by(UserResponse.position)
            ).all()
            assert served == [qid_of[pool.item_id[i]] for i in record.items]
            assert [tuple(a) for a in answers] == list(zip(record.theta_after, record.se_after))
    if name == "se_stop_grid":  # the SE rule, not the maximum length, ended some tests
        assert "se_target" in reasons, reasons

    # The admin audit says "identical" for every quiz, and names the first tampered position.
    for quiz_id in quiz_ids:
        audit = api.get(f"/v1/admin/quizzes/{quiz_id}/audit", **ADMIN)
        assert audit.status_code == 200 and audit.json()["identical"] is True, audit.text
    with session_factory() as session:
        row = session.scalar(
            select(UserResponse).where(UserResponse.quiz_id == quiz_ids[0], UserResponse.position == 2)
        )
        row.theta_after += 1e-9
        session.commit()
    audit = api.get(f"/v1/admin/quizzes/{quiz_ids[0]}/audit", **ADMIN).json()
    assert (audit["identical"], audit["position"]) == (False, 2) and "theta, SE" in audit["reason"]


def test_audit_quiz_command(api, loaded_bank, session_factory, database_url, monkeypatch):
    promote(api, BUNDLES["classic"]())
    quiz_id = api.post("/v1/quizzes", user="carol", json={"filters": {"num_questions": 5}}).json()["quiz_id"]
    for _ in range(5):
        qid = api.get(f"/v1/quizzes/{quiz_id}/next", user="carol").json()["question_id"]
        api.post(f"/v1/quizzes/{quiz_id}/answers", user="carol", json={"question_id": qid, "selected": "A"})
    from qbank.cli.main import cli

    result = CliRunner().invoke(cli, ["audit-quiz", quiz_id, "--database-url", database_url])
    assert result.exit_code == 0 and "identical (5 position(s)" in result.output, result.output
    with session_factory() as session:
        first = session.scalar(select(QuizItem).where(QuizItem.quiz_id == quiz_id, QuizItem.position == 0))
        first.pool_index = (first.pool_index + 1) % 600
        session.commit()
    result = CliRunner().invoke(cli, ["audit-quiz", quiz_id, "--database-url", database_url])
    assert result.exit_code == 1 and "diverges at position 0" in result.output, result.output
