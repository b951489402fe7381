"""Quiz sessions: start, serve the next item, take an answer, summarise.

All state is in the database: the session row holds the running estimate, the pinned pool
snapshot, bundle revision and rules, and the items withdrawn by Sympson-Hetter; ``quiz_items`` holds
what was served, ``user_responses`` what was answered. A request locks its quiz row
(``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so one quiz's
requests apply one at a time, whichever instance serves them. ``next`` and ``answer`` read and
write those rows with the Core statements of :mod:`service.quiz_rows`, one transaction each.

A quiz runs the complete rules it pinned when it started (:mod:`service.exposure.rules`: the
active bundle revision's selector, K, estimator, stopping and first-item rules, or explicit
settings without a bundle), through the same one-examinee steps as the core's
:func:`qbank.rules.run_test` (:meth:`~qbank.rules.CatRules.select`,
:meth:`~qbank.rules.CatRules.estimate`, with the draws of
:meth:`~qbank.rules.CatRules.session_draws` from the quiz id; for a linear quiz the plan's
shuffle), so any served sequence replays in the core. An item already served ``cap`` times
that UTC day is withdrawn like one rejected by its exposure draw, and the ``question_served``
event names it.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qbank.rules import stopping_from_dict
from qbank.selection import session_rng
from qbank.stopping import FixedLength, StandardError
from service.core.config import Settings
from service.core.security import TokenUser
from service.errors import Conflict, Forbidden, Gone, Invalid, NotFound
from service.events import emit
from service.exposure import SELECTOR_RULES, capped_today, choose_selector, claim_daily_exposure
from service.exposure.rules import describe, pin_rules, quiz_rules
from service.models import QuizItem, QuizSession, UserResponse, utcnow
from service.pools import PoolView, ensure_snapshot, item_contents, pool_view
from service.quiz_items import available_for_quiz, eligible_items, linear_plan, resolve_quota
from service.quiz_rows import (
    insert_item,
    insert_response,
    item_at,
    keep_served,
    read_quiz,
    save_quiz,
    served_row,
    served_with_answers,
)
from service.schemas import AnswerSubmit, QuizCreate

# Rules a flag or cohort may choose; an exposure-controlled cohort runs the active bundle's
# selector (see service.exposure.rules.pin_rules).
COHORT_RULES = SELECTOR_RULES


# ---------------------------------------------------------------------------- configuration
def selector_for_user(session: Session, tenant_id: str, user_id: str) -> dict:
    """The selection rule for a new quiz: the user's sticky variant of a weighted flag, else the
    user's cohort, else the tenant's flag, else max_info (:func:`service.exposure.choose_selector`)."""
    return choose_selector(session, tenant_id, user_id)


def _stopping(config: dict):
    return stopping_from_dict(config)


# ---------------------------------------------------------------------------- sessions
def _load(
    session: Session, user: TokenUser, quiz_id: str, *, lock: bool, admin_may_read: bool = False
) -> SimpleNamespace:
    """The quiz's row (locked with ``lock``) as a namespace of its columns."""
    quiz = read_quiz(session, user.tenant, quiz_id, lock=lock)
    if quiz is None or (quiz.user_id != user.sub and not (admin_may_read and user.has_any("admin"))):
        raise NotFound(f"quiz {quiz_id} not found")
    return quiz


def _check_open(session: Session, quiz) -> None:
    if quiz.status == "finished":
        raise Conflict(
            f"quiz {quiz.id} is finished ({quiz.finish_reason}); GET /v1/quizzes/{quiz.id} has the summary"
        )
    if quiz.status == "expired" or utcnow() >= quiz.expires_at:
        if quiz.status != "expired":
            save_quiz(session, quiz, status="expired")
            session.commit()
        raise Gone(f"quiz {quiz.id} expired at {quiz.expires_at.isoformat()}")


def _finish(session: Session, quiz, reason: str) -> dict:
    """Emit ``quiz_finished``; returns the quiz's changes (the caller saves them)."""
    emit(
        session,
        quiz.tenant_id,
        "quiz_finished",
        "quiz",
        quiz.id,
        {
            "quiz_id": quiz.id,
            "user_id": quiz.user_id,
            "reason": reason,
            "answered": quiz.n_answered,
            "correct": quiz.n_correct,
            "theta": quiz.theta,
            "se": quiz.se,
        },
    )
    return {"status": "finished", "finish_reason": reason, "finished_at": utcnow()}


def _new_quiz_id(session: Session, settings: Settings, user: TokenUser) -> str:
    """A random uuid4, or with ``settings.quiz_seed`` one derived from the seed, the tenant, the
    user and how many quizzes the user already has: the quiz's draws then repeat between runs."""
    if settings.quiz_seed is None:
        return str(uuid.uuid4())
    taken = session.scalar(
        select(func.count())
        .select_from(QuizSession)
        .where(QuizSession.tenant_id == user.tenant, QuizSession.user_id == user.sub)
    )
    digest = hashlib.sha256(f"{settings.quiz_seed}:{user.tenant}:{user.sub}:{taken}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def start_quiz(
    session: Session, settings: Settings, user: TokenUser, body: QuizCreate
) -> tuple[QuizSession, list[int]]:
    """Create a quiz on the exam's current pool; commits. Returns the quiz and, for a linear
    quiz, its planned question ids (an adaptive quiz chooses as it goes)."""
    if body.tenant_id is not None and body.tenant_id != user.tenant:
        raise Forbidden(f"tenant_id {body.tenant_id!r} is not the tenant of your token")
    filters = body.filters
    exam_code = filters.exam_code or settings.exam_code
    snapshot_id = ensure_snapshot(session, user.tenant, exam_code)
    view = pool_view(session, snapshot_id)
    if filters.topics:
        unknown = sorted(set(filters.topics) - set(view.topic_names))
        if unknown:
            raise Invalid(
                f"filters.topics: unknown topic(s) {unknown}; exam {exam_code!r} has {view.topic_names}"
            )
    filter_dict = filters.model_dump(include={"topics", "difficulty", "b_min", "b_max"})
    eligible = eligible_items(view, filter_dict)
    n_eligible = int(eligible.sum())
    if n_eligible == 0:
        raise Invalid(f"filters: no published item of exam {exam_code!r} matches {filter_dict}")
    max_length = min(filters.num_questions, n_eligible)
    blueprint = resolve_quota(view, eligible, body.blueprint_quota, max_length)
    quiz_id = _new_quiz_id(session, settings, user)
    plan = None
    if body.adaptive:
        selector = selector_for_user(session, user.tenant, user.sub)
    else:
        selector = {"rule": "linear", "source": "request"}
        plan = linear_plan(view, eligible, blueprint, max_length, session_rng(quiz_id))
        max_length = len(plan)
    if filters.se_target is None:
        requested = FixedLength(max_length)
    else:
        requested = StandardError(filters.se_target, min(filters.min_questions, max_length), max_length)
    # The bundle revision in force and its rules (or the explicit settings) and the daily cap
    # are pinned for the whole quiz.
    bundle_id, selector, stopping, rules = pin_rules(
        session,
        user.tenant,
        exam_code,
        view,
        selector,
        requested,
        adaptive=body.adaptive,
        daily_cap=settings.max_daily_exposures if body.adaptive else None,
    )
    theta, se = rules.first_estimate(1)
    now = utcnow()
    quiz = QuizSession(
        id=quiz_id,
        tenant_id=user.tenant,
        user_id=user.sub,
        mode=filters.mode,
        adaptive=body.adaptive,
        exam_code=exam_code,
        status="active",
        filters=filter_dict,
        blueprint=blueprint,
        selector=selector,
        stopping=stopping,
        pool_snapshot_id=snapshot_id,
        exposure_bundle_id=bundle_id,
        plan=plan,
        withdrawn=[],
        n_served=0,
        n_answered=0,
        n_correct=0,
        theta=float(theta[0]),
        se=float(se[0]),
        created_at=now,
        expires_at=now + timedelta(minutes=settings.quiz_ttl_minutes),
    )
    session.add(quiz)
    emit(
        session,
        user.tenant,
        "quiz_started",
        "quiz",
        quiz_id,
        {
            "quiz_id": quiz_id,
            "user_id": user.sub,
            "exam_code": exam_code,
            "mode": filters.mode,
            "adaptive": body.adaptive,
            "selector": selector,
            "stopping": quiz.stopping,
            "pool_snapshot_id": snapshot_id,
            "exposure_bundle_id": bundle_id,
            "filters": filter_dict,
            "blueprint": blueprint,
            "theta": quiz.theta,  # the prior's, until the first answer
            "se": quiz.se,
        },
    )
    session.commit()
    planned = [int(view.question_id[i]) for i in plan] if plan is not None else []
    return quiz, planned


def _render(quiz, item, session: Session) -> dict:
    content = item_contents(session, [item.question_version_id])[item.question_version_id]
    return {
        "quiz_id": quiz.id,
        "position": item.position,
        "question_id": item.question_id,
        "version": item.version,
        "payload": {
            "stem_md": content.stem_md,
            "lead_in": content.lead_in,
            "options": [{"label": label, "text": text} for label, text in content.options],
        },
        "max_questions": _stopping(quiz.stopping).max_length,
    }


def next_item(session: Session, user: TokenUser, quiz_id: str, _retry: bool = True) -> dict:
    """The pending item, choosing and recording it first when none is pending; commits."""
    quiz = _load(session, user, quiz_id, lock=True)
    _check_open(session, quiz)
    if quiz.n_served > quiz.n_answered:
        item = item_at(session, quiz.id, quiz.n_answered)
        rendered = _render(quiz, item, session)
        session.commit()
        return rendered
    view = pool_view(session, quiz.pool_snapshot_id)
    max_length = _stopping(quiz.stopping).max_length
    position = quiz.n_served
    withdrawn: list[int] = []
    capped: list[int] = []
    if quiz.plan is not None:
        index = quiz.plan[position] if position < len(quiz.plan) else -1
    else:
        served = served_with_answers(session, quiz)
        available = available_for_quiz(view, quiz, [row.pool_index for row in served], max_length)
        rules = quiz_rules(session, quiz, view)
        draws, steps = rules.session_draws(quiz.id, view.n_items)
        cap = quiz.selector.get("daily_cap")
        at_cap: set | None = None  # items at today's cap, read once the cap first bites
        while True:
            selection = rules.select(view.pool, quiz.theta, available, position, draws, steps)
            withdrawn += selection.withdrawn_items.tolist()
            available[selection.withdrawn_items] = False
            index = int(selection.item[0])
            if index < 0 or not cap:
                break
            # An item served `cap` times today is withdrawn like a rejected one, and the next best tried.
            key = (int(view.question_id[index]), int(view.version[index]))
            if at_cap is None or key not in at_cap:
                if claim_daily_exposure(session, quiz.tenant_id, key[0], key[1], cap):
                    break
                if at_cap is None:
                    at_cap = capped_today(session, quiz.tenant_id, cap)
            capped.append(index)
            available[index] = False
    changes = {"withdrawn": list(quiz.withdrawn) + withdrawn + capped} if withdrawn or capped else {}
    if index < 0:
        save_quiz(session, quiz, **changes, **_finish(session, quiz, "pool_exhausted"))
        session.commit()
        raise Conflict(f"quiz {quiz.id} is finished (pool_exhausted): no eligible item is left")
    item = SimpleNamespace(
        quiz_id=quiz.id,
        position=position,
        pool_index=index,
        question_id=int(view.question_id[index]),
        version=int(view.version[index]),
        question_version_id=int(view.question_version_id[index]),
        calibration_id=view.calibration_id[index],
        theta_before=quiz.theta,
        se_before=quiz.se,
        served_at=utcnow(),
    )
    insert_item(session, vars(item))
    save_quiz(session, quiz, n_served=position + 1, **changes)
    rendered = _render(quiz, item, session)
    emit(
        session,
        quiz.tenant_id,
        "question_served",
        "quiz",
        quiz.id,
        {
            "quiz_id": quiz.id,
            "position": position,
            "question_id": item.question_id,
            "version": item.version,
            "question_version_id": item.question_version_id,
            "calibration_id": item.calibration_id,
            "selector": quiz.selector["rule"],
            "theta": quiz.theta,
            "se": quiz.se,
            "withdrawn_question_ids": [int(view.question_id[i]) for i in withdrawn],
            "capped_question_ids": [int(view.question_id[i]) for i in capped],
        },
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        if not _retry:
            raise
        return next_item(session, user, quiz_id, _retry=False)
    if quiz.plan is None:
        keep_served(session, quiz, [*served, served_row(item)])
    return rendered


def _result(
    quiz, item, selected: str, is_correct: bool, score: int, view: PoolView, session: Session
) -> dict:
    revealed = quiz.mode == "tutor"
    out = {
        "quiz_id": quiz.id,
        "position": item.position,
        "question_id": item.question_id,
        "selected": selected,
        "revealed": revealed,
        "correct": None,
        "correct_option": None,
        "score": None,
        "max_score": None,
        "explanation": None,
        "difficulty": None,
        "quiz_finished": quiz.status == "finished",
    }
    if revealed:
        content = item_contents(session, [item.question_version_id])[item.question_version_id]
        out.update(
            correct=bool(is_correct),
            correct_option=content.correct_option,
            score=score,
            max_score=content.max_score,
            explanation={"rationale_md": content.rationale_md},
            difficulty=float(view.pool.b[item.pool_index]),
        )
    return out


def submit_answer(
    session: Session, user: TokenUser, quiz_id: str, body: AnswerSubmit, _retry: bool = True
) -> dict:
    """Record the answer to the pending item and re-estimate theta under the quiz's rules; commits.

    A replay of a recorded answer returns the stored result; a different answer to an
    answered position, or an answer to anything but the pending item, is a conflict.
    """
    quiz = _load(session, user, quiz_id, lock=True)
    served = served_with_answers(session, quiz)
    item = next((row for row in served if row.question_id == body.question_id), None)
    if item is None or (body.position is not None and body.position != item.position):
        pending = (
            "no item is pending (call next)"
            if quiz.n_served == quiz.n_answered
            else f"the pending item is position {quiz.n_answered}"
        )
        raise Conflict(
            f"question {body.question_id}"
            + ("" if body.position is None else f" at position {body.position}")
            + f" is not an item of quiz {quiz.id} that can be answered; {pending}"
        )
    view = pool_view(session, quiz.pool_snapshot_id)
    if item.position < quiz.n_answered:
        if item.option_label != body.selected:
            raise Conflict(
                f"position {item.position} of quiz {quiz.id} was already answered with "
                f"{item.option_label!r}; an answer cannot change"
            )
        result = _result(quiz, item, item.option_label, item.is_correct, item.score, view, session)
        session.commit()
        return result
    _check_open(session, quiz)
    content = item_contents(session, [item.question_version_id])[item.question_version_id]
    if body.selected not in content.labels:
        raise Invalid(
            f"selected: {body.selected!r} is not an option of question {item.question_id}; "
            f"the options are {list(content.labels)}"
        )
    is_correct = body.selected == content.correct_option
    # The option's credit is the category response (0/1 for a dichotomous item).
    score = content.score_of(body.selected)
    earlier = [row for row in served if row.position < item.position]
    answered = np.array([row.pool_index for row in earlier] + [item.pool_index], dtype=np.intp)
    responses = [float(row.score) for row in earlier] + [float(score)]
    theta, se = quiz_rules(session, quiz, view).estimate(view.pool, answered, responses)
    now = utcnow()
    theta_before, se_before = quiz.theta, quiz.se
    insert_response(
        session,
        dict(
            tenant_id=quiz.tenant_id,
            quiz_id=quiz.id,
            position=item.position,
            user_id=quiz.user_id,
            question_id=item.question_id,
            version=item.version,
            question_version_id=item.question_version_id,
            calibration_id=item.calibration_id,
            option_label=body.selected,
            is_correct=is_correct,
            score=score,
            time_taken_ms=body.time_taken_ms,
            client_latency_ms=body.client_latency_ms,
            server_elapsed_ms=int((now - item.served_at).total_seconds() * 1000),
            theta_before=theta_before,
            se_before=se_before,
            theta_after=theta,
            se_after=se,
            created_at=now,
        ),
    )
    changes = {
        "theta": theta,
        "se": se,
        "n_answered": quiz.n_answered + 1,
        "n_correct": quiz.n_correct + int(is_correct),
    }
    for name, value in changes.items():
        setattr(quiz, name, value)  # _finish reports the new figures
    emit(
        session,
        quiz.tenant_id,
        "answer_submitted",
        "quiz",
        quiz.id,
        {
            "quiz_id": quiz.id,
            "position": item.position,
            "question_id": item.question_id,
            "version": item.version,
            "question_version_id": item.question_version_id,
            "calibration_id": item.calibration_id,
            "selected": body.selected,
            "is_correct": is_correct,
            "score": score,
            "time_taken_ms": body.time_taken_ms,
            "theta_before": theta_before,
            "se_before": se_before,
            "theta_after": theta,
            "se_after": se,
        },
    )
    stopping = _stopping(quiz.stopping)
    if bool(stopping.done(quiz.n_answered, quiz.se)):
        reason = "se_target" if quiz.n_answered < stopping.max_length else "length"
        changes.update(_finish(session, quiz, reason))
    elif (
        quiz.plan is None and not available_for_quiz(view, quiz, answered.tolist(), stopping.max_length).any()
    ):
        changes.update(_finish(session, quiz, "pool_exhausted"))
    save_quiz(session, quiz, **changes)
    result = _result(quiz, item, body.selected, is_correct, score, view, session)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        if not _retry:
            raise
        return submit_answer(session, user, quiz_id, body, _retry=False)
    answered_row = served_row(item, body.selected, is_correct, score)
    keep_served(session, quiz, [answered_row if row is item else row for row in served])
    return result


def summary(session: Session, user: TokenUser, quiz_id: str) -> dict:
    """Progress of a quiz; theta, SE and per-topic results once finished. Keys and
    rationales appear only for answered items in tutor mode, and for all items once finished."""
    quiz = _load(session, user, quiz_id, lock=False, admin_may_read=True)
    items = session.scalars(
        select(QuizItem).where(QuizItem.quiz_id == quiz.id).order_by(QuizItem.position)
    ).all()
    responses = {
        r.position: r for r in session.scalars(select(UserResponse).where(UserResponse.quiz_id == quiz.id))
    }
    view = pool_view(session, quiz.pool_snapshot_id)
    status = quiz.status
    if status == "active" and utcnow() >= quiz.expires_at:
        status = "expired"
    finished = status == "finished"
    contents = item_contents(session, [i.question_version_id for i in items])
    out_items, per_topic = [], {}
    for item in items:
        response = responses.get(item.position)
        topic = str(view.topic[item.pool_index])
        row = {
            "position": item.position,
            "question_id": item.question_id,
            "version": item.version,
            "topic": topic,
            "selected": None if response is None else response.option_label,
        }
        if response is not None and (finished or quiz.mode == "tutor"):
            content = contents[item.question_version_id]
            row.update(
                correct=bool(response.is_correct),
                correct_option=content.correct_option,
                score=response.score,
                max_score=content.max_score,
                rationale_md=content.rationale_md,
            )
        elif finished:
            content = contents[item.question_version_id]
            row.update(correct_option=content.correct_option, rationale_md=content.rationale_md)
        out_items.append(row)
        if response is not None:
            answered, correct = per_topic.get(topic, (0, 0))
            per_topic[topic] = (answered + 1, correct + int(response.is_correct))
    session.commit()  # ends the read transaction: the connection goes back to the pool now
    return {
        "quiz_id": quiz.id,
        "status": status,
        "finish_reason": quiz.finish_reason,
        "mode": quiz.mode,
        "adaptive": quiz.adaptive,
        "exam_code": quiz.exam_code,
        "selector": quiz.selector["rule"],
        "rules": describe(quiz),
        "max_questions": _stopping(quiz.stopping).max_length,
        "answered": quiz.n_answered,
        "correct": quiz.n_correct if (finished or quiz.mode == "tutor") else None,
        "theta": quiz.theta if finished else None,
        "se": quiz.se if finished else None,
        "per_topic": [{"topic": t, "answered": a, "correct": c} for t, (a, c) in sorted(per_topic.items())]
        if finished
        else None,
        "items": out_items,
        "expires_at": quiz.expires_at,
        "finished_at": quiz.finished_at,
    }
