"""Loading the demo bank (``data/demo_bank.json`` + ``data/demo_pool.csv``) into a database.

Every bank item becomes a question (``external_ref`` = the pool's item_id) whose version 1
is published for the bank's exam and calibrated with the pool's parameters. Loading twice
adds nothing: items already present are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from qbank.pool import ItemPool, load_pool
from service.authoring import topic_for
from service.calibration import import_calibration
from service.models import Question, QuestionOption, QuestionPublication, QuestionVersion

ROOT = Path(__file__).resolve().parents[1]
DEMO_BANK = ROOT / "data" / "demo_bank.json"
DEMO_POOL = ROOT / "data" / "demo_pool.csv"


def read_bank(bank_path=DEMO_BANK, pool_path=DEMO_POOL) -> tuple[dict, ItemPool]:
    """The bank and its pool, checked against each other (same item ids, same topics)."""
    bank = json.loads(Path(bank_path).read_text(encoding="utf-8"))
    pool = load_pool(pool_path)
    bank_ids = [item["item_id"] for item in bank["items"]]
    if bank_ids != [str(i) for i in pool.item_id]:
        missing = sorted(set(map(str, pool.item_id)) - set(bank_ids))[:10]
        extra = sorted(set(bank_ids) - set(map(str, pool.item_id)))[:10]
        raise ValueError(
            f"{bank_path} does not match {pool_path} item by item (missing {missing}, extra {extra})"
        )
    if pool.topic is not None:
        wrong = [i["item_id"] for i, t in zip(bank["items"], pool.topic) if i["topic"] != t]
        if wrong:
            raise ValueError(f"{bank_path}: topics differ from {pool_path} for {wrong[:10]}")
    return bank, pool


def load_demo(
    session: Session,
    tenant_id: str,
    *,
    bank_path=DEMO_BANK,
    pool_path=DEMO_POOL,
    exam_code: str | None = None,
    actor: str = "load-demo",
    limit: int | None = None,
) -> int:
    """Load the bank (its first ``limit`` items when given); returns how many items were new; commits."""
    bank, pool = read_bank(bank_path, pool_path)
    exam_code = exam_code or bank["exam_code"]
    items = bank["items"][:limit] if limit else bank["items"]
    refs = [item["item_id"] for item in items]
    present = set(
        session.scalars(
            select(Question.external_ref).where(
                Question.tenant_id == tenant_id, Question.external_ref.in_(refs)
            )
        )
    )
    new = [(i, item) for i, item in enumerate(items) if item["item_id"] not in present]
    if not new:
        return 0
    topics = {
        name: topic_for(session, tenant_id, name).id for name in sorted({item["topic"] for _, item in new})
    }
    question_ids = session.scalars(
        insert(Question).returning(Question.id, sort_by_parameter_order=True),
        [
            {
                "tenant_id": tenant_id,
                "external_ref": item["item_id"],
                "created_by": actor,
                "is_deleted": False,
            }
            for _, item in new
        ],
    ).all()
    version_ids = session.scalars(
        insert(QuestionVersion).returning(QuestionVersion.id, sort_by_parameter_order=True),
        [
            {
                "question_id": qid,
                "version": 1,
                "state": "published",
                "stem_md": item["stem_md"],
                "lead_in": item["lead_in"],
                "rationale_md": item["rationale_md"],
                "difficulty_label": item["difficulty_label"],
                "bloom_level": None,
                "topic_id": topics[item["topic"]],
                "tags": {"level": item["level"], "source": "demo-bank"},
                "assets": [],
                "references": [],
                "created_by": actor,
            }
            for qid, (_, item) in zip(question_ids, new)
        ],
    ).all()
    session.execute(
        insert(QuestionOption),
        [
            {
                "question_version_id": vid,
                "option_label": o["label"],
                "option_text_md": o["text_md"],
                "is_correct": o["is_correct"],
            }
            for vid, (_, item) in zip(version_ids, new)
            for o in item["options"]
        ],
    )
    session.execute(
        insert(QuestionPublication),
        [
            {
                "tenant_id": tenant_id,
                "question_id": qid,
                "exam_code": exam_code,
                "live_version": 1,
                "question_version_id": vid,
                "published_by": actor,
            }
            for qid, vid in zip(question_ids, version_ids)
        ],
    )
    import_calibration(session, tenant_id, actor, pool.subset([i for i, _ in new]), Path(pool_path).name)
    return len(new)
