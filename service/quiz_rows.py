"""The rows of a quiz on the student's hot path (next, answer), read and written with Core
statements built once here, on the session's connection, instead of ORM objects.

A quiz is one row read (under its lock) into a plain namespace and its changes one UPDATE; served
items and answers are inserted without the unit of work. A statement built once keeps its cache
key, so SQLAlchemy finds the compiled form without walking a new statement on every request.

A quiz's served items and answers are append-only, and the quiz row counts them (``n_served``,
``n_answered``, changed in the same transaction). So the process keeps the list it last committed
for a quiz, and uses it again only when the counters of the row just read under the lock are the
ones it was kept with (and the quiz's ``created_at``: a quiz id a seed makes again in a database
emptied under the server is another quiz); any other instance's or worker's write in between
changes them, and the rows are read again. A student's answer and next come on one connection, to
one worker. A database restored from a backup under a running server can bring a quiz back to
counters it had: restart the server after a restore.
"""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.orm import Session

from service.models import QuizItem, QuizSession, UserResponse
from service.pools import _caches

_QUIZ = QuizSession.__table__
_ITEM = QuizItem.__table__
_RESPONSE = UserResponse.__table__
_READ_QUIZ = select(_QUIZ).where(_QUIZ.c.id == bindparam("quiz_id"), _QUIZ.c.tenant_id == bindparam("tenant"))
_LOCK_QUIZ = _READ_QUIZ.with_for_update()
_UPDATE_QUIZ = update(_QUIZ).where(_QUIZ.c.id == bindparam("quiz_id_"))  # SET: the keys given
_ITEM_AT = select(_ITEM).where(
    _ITEM.c.quiz_id == bindparam("quiz_id"), _ITEM.c.position == bindparam("position")
)
_SERVED_FIELDS = (
    "position",
    "pool_index",
    "question_id",
    "version",
    "question_version_id",
    "calibration_id",
    "served_at",
)
_SERVED_WITH_ANSWERS = (
    select(
        *(_ITEM.c[name] for name in _SERVED_FIELDS),
        _RESPONSE.c.option_label,
        _RESPONSE.c.is_correct,
        _RESPONSE.c.score,
    )
    .select_from(_ITEM)
    .outerjoin(
        _RESPONSE, and_(_RESPONSE.c.quiz_id == _ITEM.c.quiz_id, _RESPONSE.c.position == _ITEM.c.position)
    )
    .where(_ITEM.c.quiz_id == bindparam("quiz_id"))
    .order_by(_ITEM.c.position)
)
_INSERT_ITEM = insert(_ITEM)
_INSERT_RESPONSE = insert(_RESPONSE)


def read_quiz(session: Session, tenant_id: str, quiz_id: str, *, lock: bool) -> SimpleNamespace | None:
    """The quiz's row as a namespace of its columns (``SELECT ... FOR UPDATE`` with ``lock``)."""
    row = (
        session.connection()
        .execute(_LOCK_QUIZ if lock else _READ_QUIZ, {"quiz_id": quiz_id, "tenant": tenant_id})
        .first()
    )
    return None if row is None else SimpleNamespace(**row._mapping)


def save_quiz(session: Session, quiz: SimpleNamespace, **changes) -> None:
    """Apply ``changes`` to the quiz's row and to ``quiz`` (no commit)."""
    session.connection().execute(_UPDATE_QUIZ, {"quiz_id_": quiz.id, **changes})
    for name, value in changes.items():
        setattr(quiz, name, value)
    # A QuizSession object of this session (e.g. from start_quiz) must not go on showing the old row.
    held = session.identity_map.get(session.identity_key(QuizSession, quiz.id))
    if held is not None:
        session.expire(held)


def item_at(session: Session, quiz_id: str, position: int):
    """The item served at ``position`` (a row with the columns of ``quiz_items``)."""
    return session.connection().execute(_ITEM_AT, {"quiz_id": quiz_id, "position": position}).one()


def served_with_answers(session: Session, quiz: SimpleNamespace) -> list:
    """Every item served to ``quiz`` (read under its lock) with its recorded answer
    (``option_label``, ``is_correct``, ``score``; None while pending), in position order."""
    kept = _caches(session).quizzes.get(quiz.id)
    if kept is not None and kept[0] == (quiz.created_at, quiz.n_served, quiz.n_answered):
        return list(kept[1])
    return session.connection().execute(_SERVED_WITH_ANSWERS, {"quiz_id": quiz.id}).all()


def keep_served(session: Session, quiz: SimpleNamespace, served: list) -> None:
    """Keep ``served`` (as :func:`served_with_answers` returns it) for the quiz's next request;
    call after the commit that wrote them, with ``quiz`` as committed."""
    _caches(session).quizzes.put(quiz.id, ((quiz.created_at, quiz.n_served, quiz.n_answered), tuple(served)))


def served_row(item: SimpleNamespace, option_label=None, is_correct=None, score=None) -> SimpleNamespace:
    """The row of :func:`served_with_answers` for a served item (and its answer)."""
    return SimpleNamespace(
        **{name: getattr(item, name) for name in _SERVED_FIELDS},
        option_label=option_label,
        is_correct=is_correct,
        score=score,
    )


def insert_item(session: Session, values: dict) -> None:
    session.connection().execute(_INSERT_ITEM, values)


def insert_response(session: Session, values: dict) -> None:
    session.connection().execute(_INSERT_RESPONSE, values)
