"""``QBANK_QUIZ_SEED``: seeded quiz ids make a simulated cohort repeat bit for bit (SQLite)."""

from __future__ import annotations

import pytest
from exposure_support import SECRET, TENANT, run_students, service_settings
from pydantic import ValidationError
from sqlalchemy import select

from service import exposure
from service.core.config import Settings
from service.db import make_engine, make_session_factory, migrate
from service.demo import load_demo
from service.models import QuizItem


def _cohort(tmp_path, name, quiz_seed, users=("s1", "s2", "s3")):
    """A fresh 40-item exam with randomesque selection (so the quiz's own draws matter) and one
    quiz per user, then a second quiz for the first user; returns the quiz ids and served items."""
    url = f"sqlite:///{tmp_path / name}"
    migrate(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session:
        load_demo(session, TENANT, limit=40)
        exposure.set_flag(
            session, TENANT, "root", "selector_strategy", True, {"value": "randomesque", "k": 12}
        )
    settings = service_settings(url, quiz_seed=quiz_seed)
    ids = run_students(factory, settings, list(users), 5, length=6, tenant=TENANT)
    ids += run_students(factory, settings, list(users[:1]), 5, length=6, tenant=TENANT)
    with factory() as session:
        served = [
            [
                item
                for (item,) in session.execute(
                    select(QuizItem.question_id).where(QuizItem.quiz_id == quiz).order_by(QuizItem.position)
                )
            ]
            for quiz in ids
        ]
    engine.dispose()
    return ids, served


def test_a_quiz_seed_repeats_ids_and_draws(tmp_path):
    ids, served = _cohort(tmp_path, "first.db", quiz_seed=11)
    again_ids, again_served = _cohort(tmp_path, "second.db", quiz_seed=11)
    assert (again_ids, again_served) == (ids, served)
    assert len(set(ids)) == 4  # the first user's second quiz has an id of its own
    other_ids, other_served = _cohort(tmp_path, "other.db", quiz_seed=12)
    assert not set(other_ids) & set(ids)
    assert other_served != served  # randomesque draws follow the quiz id
    random_ids, _ = _cohort(tmp_path, "random.db", quiz_seed=None)
    assert not set(random_ids) & set(ids)


def test_a_quiz_seed_is_refused_in_production():
    with pytest.raises(ValidationError, match="QBANK_QUIZ_SEED makes quiz ids predictable"):
        Settings(env="production", secret_key=SECRET, quiz_seed=1)
    assert Settings(env="dev", quiz_seed=1).quiz_seed == 1
