"""Item calibrations imported from a pool file (``qbank import-calibration`` or the admin API).

A pool row's ``item_id`` is a question's ``external_ref``. The parameters are tied to the
question's newest published version (or its newest version when none is published yet);
earlier calibrations of that version stay in the table, no longer current.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from qbank.pool import ItemPool, PoolError
from service.errors import Invalid
from service.events import audit
from service.models import ItemCalibration, Question, QuestionVersion


def pool_from_csv_bytes(content: bytes, source: str) -> ItemPool:
    """Validate an uploaded pool CSV with the core's rules; :class:`Invalid` names the rows."""
    try:
        frame = pd.read_csv(io.BytesIO(content), dtype={"item_id": str, "topic": str}, skipinitialspace=True)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise Invalid(f"{source}: cannot read CSV: {exc}") from None
    try:
        return ItemPool.from_frame(frame, name=source, source=source)
    except PoolError as exc:
        raise Invalid(str(exc)) from None


def import_calibration(session: Session, tenant_id: str, actor: str, pool: ItemPool, source: str, *,
                       n_respondents: Mapping[str, int] | None = None, details: Mapping | None = None) -> int:
    """Store ``pool``'s parameters as the current calibration of the matching questions; commits.

    ``n_respondents`` (item_id -> responses the calibration used, from its report) fills that
    column where known; ``details`` are added to the audit record (e.g. items left out).

    Raises
    ------
    Invalid
        When any ``item_id`` matches no question of the tenant (nothing is imported).
    """
    item_ids = [str(i) for i in pool.item_id]
    questions = dict(session.execute(
        select(Question.external_ref, Question.id).where(
            Question.tenant_id == tenant_id, Question.external_ref.in_(item_ids), Question.is_deleted.is_(False))
    ).all())
    unknown = [i for i in item_ids if i not in questions]
    if unknown:
        raise Invalid(f"{source}: {len(unknown)} item_id(s) match no question's external_ref, e.g. {unknown[:10]}")
    rows = session.execute(
        select(QuestionVersion.question_id, QuestionVersion.id, QuestionVersion.version, QuestionVersion.state)
        .where(QuestionVersion.question_id.in_(questions.values()))
    ).all()
    target: dict[int, tuple] = {}
    for question_id, version_id, version, state in rows:
        rank = (state == "published", version)
        if question_id not in target or rank > target[question_id][0]:
            target[question_id] = (rank, version_id, version)
    version_ids = [target[q][1] for q in questions.values()]
    session.execute(
        update(ItemCalibration).where(ItemCalibration.question_version_id.in_(version_ids),
                                      ItemCalibration.is_current).values(is_current=False)
    )
    model = pool.model
    session.add_all(
        ItemCalibration(
            tenant_id=tenant_id, question_id=questions[item_id], question_version_id=target[questions[item_id]][1],
            version=target[questions[item_id]][2], model=model, a=float(a), b=float(b), c=float(c), D=float(d),
            n_respondents=None if n_respondents is None or item_id not in n_respondents else int(n_respondents[item_id]),
            source=source[:256], is_current=True,
        )
        for item_id, a, b, c, d in zip(item_ids, pool.a, pool.b, pool.c, pool.D)
    )
    audit(session, tenant_id, actor, "calibration.import", "pool", pool.sha256()[:16],
          {"source": source, "n_items": len(item_ids), "model": model, **(details or {})})
    session.commit()
    return len(item_ids)
