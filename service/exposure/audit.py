"""Audit a served quiz: replay it in the core under the rules it pinned and compare.

The rules are rebuilt from the pinned bundle revision's document (or the quiz's recorded
settings) by :func:`qbank.rules_from_bundle` / :func:`qbank.rules_from_settings`, with nothing
cached; the replay is :func:`qbank.rules.audit_test` with the quiz's draws (its id), filters,
quotas, the answers it recorded and the items a daily cap withdrew (from its
``question_served`` events). The answer is "identical", or the first position where the
record departs from the replay and why.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from qbank.rules import audit_test, rules_from_bundle
from qbank.selection import EXPOSURE_CONTROLLED
from service.errors import Invalid, NotFound
from service.exposure.rules import quiz_rules
from service.models import ExposureBundle, OutboxEvent, QuizItem, QuizSession, UserResponse
from service.pools import pool_view


def _rules(session: Session, quiz: QuizSession, view):
    config = quiz.selector
    if config["rule"] in EXPOSURE_CONTROLLED and config.get("bundle_id"):
        bundle = session.get(ExposureBundle, config["bundle_id"])
        if bundle is None:
            raise NotFound(f"exposure bundle {config['bundle_id']} of quiz {quiz.id} not found")
        return rules_from_bundle(bundle.document, view.pool, item_ids=list(view.ref))
    return quiz_rules(session, quiz, view)


def audit_quiz(session: Session, tenant_id: str, quiz_id: str) -> dict:
    """Replay quiz ``quiz_id`` in the core and compare it position by position.

    Returns
    -------
    dict
        ``quiz_id, status, bundle_id, positions`` and ``identical`` (bool); when not identical,
        ``position`` (0-based) and ``reason``.

    Raises
    ------
    NotFound, Invalid (a linear quiz: its items come from a plan, not from the rules)
    """
    from service.quiz_items import eligible_items, quota_codes

    quiz = session.scalar(
        select(QuizSession).where(QuizSession.id == quiz_id, QuizSession.tenant_id == tenant_id)
    )
    if quiz is None:
        raise NotFound(f"quiz {quiz_id} not found")
    if not quiz.adaptive:
        raise Invalid(
            f"quiz {quiz_id} is linear: its items follow a plan, there is no adaptive sequence to replay"
        )
    view = pool_view(session, quiz.pool_snapshot_id)
    items = session.scalars(
        select(QuizItem).where(QuizItem.quiz_id == quiz.id).order_by(QuizItem.position)
    ).all()
    responses = session.scalars(
        select(UserResponse).where(UserResponse.quiz_id == quiz.id).order_by(UserResponse.position)
    ).all()
    position_of = {int(q): i for i, q in enumerate(view.question_id)}
    capped: dict = {}
    for (payload,) in session.execute(
        select(OutboxEvent.payload).where(
            OutboxEvent.aggregate_id == quiz.id, OutboxEvent.event_type == "question_served"
        )
    ):
        if payload.get("capped_question_ids"):
            capped[int(payload["position"])] = [position_of[q] for q in payload["capped_question_ids"]]
    rules = _rules(session, quiz, view)
    session.commit()
    result = audit_test(
        rules,
        view.pool,
        quiz.id,
        [i.pool_index for i in items],
        [int(r.score) for r in responses],  # category responses (0/1 when dichotomous)
        np.array([r.theta_after for r in responses], dtype=float),
        np.array([r.se_after for r in responses], dtype=float),
        eligible=eligible_items(view, quiz.filters),
        topic_code=view.topic_code,
        quota=quota_codes(view, quiz.blueprint),
        capped=capped,
    )
    return {
        "quiz_id": quiz.id,
        "status": quiz.status,
        "bundle_id": quiz.selector.get("bundle_id"),
        "positions": len(items),
        **{k: v for k, v in result.items() if k != "positions"},
    }
