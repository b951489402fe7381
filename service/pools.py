"""The item pool of an exam as the core sees it, frozen per quiz in a content-addressed snapshot.

A quiz pins the snapshot taken when it starts: the exam's live versions (sorted by question
id, a fixed order), their references (the item ids of bundles) and current calibrations.
Exposure-control parameters are not here: they live in the bundle revision a quiz pins
(:mod:`service.exposure.rules`). Later publications or
calibrations change new quizzes only, so a served sequence replays. Snapshots and question
versions never change once written, so each engine's session factory caches them by id (``session.info["caches"]``, see
:func:`service.db.make_session_factory`); nothing in these caches is state that another
instance would need.

Uncalibrated items (e.g. just authored) are *provisional*: ``a = 1, c = 0, D = 1`` and
``b`` from the difficulty label (easy -1, medium 0, hard +1); their responses record no
calibration id, so analytics can tell them apart.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qbank.pool import ItemPool
from service.errors import NotFound
from service.models import (
    ItemCalibration,
    PoolSnapshot,
    Question,
    QuestionOption,
    QuestionPublication,
    QuestionVersion,
    Topic,
)

PROVISIONAL_B = {"easy": -1.0, "medium": 0.0, "hard": 1.0}


class _LRU:
    """A small thread-safe LRU map for immutable values."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value):
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


class Caches:
    """Per-database caches of immutable rows: pool views by snapshot id, contents by version id."""

    def __init__(self, n_views: int = 32, n_contents: int = 20_000):
        self.views = _LRU(n_views)
        self.contents = _LRU(n_contents)


def _caches(session: Session) -> Caches:
    caches = session.info.get("caches")
    if caches is None:  # a session from elsewhere: cache for this session only
        caches = session.info["caches"] = Caches()
    return caches


@dataclass(frozen=True, eq=False)
class PoolView:
    """A snapshot as arrays in pool order (all of shape (n_items,)).

    Attributes
    ----------
    pool : ItemPool
        What the core's selector and estimator take; ``item_id`` is the question id as text.
    topic_names : list of str
        Sorted distinct topics; ``topic_code`` indexes into it.
    """

    snapshot_id: str
    pool: ItemPool
    question_id: np.ndarray
    question_version_id: np.ndarray
    version: np.ndarray
    calibration_id: list
    topic_id: list
    topic_code: np.ndarray
    topic_names: list
    difficulty_label: np.ndarray
    ref: np.ndarray

    @property
    def n_items(self) -> int:
        return self.pool.n_items

    @property
    def topic(self) -> np.ndarray:
        return self.pool.topic


def _snapshot_items(session: Session, tenant_id: str, exam_code: str) -> dict:
    rows = session.execute(
        select(
            QuestionVersion.question_id,
            QuestionVersion.id,
            QuestionVersion.version,
            QuestionVersion.topic_id,
            Topic.name,
            QuestionVersion.difficulty_label,
            ItemCalibration.id,
            ItemCalibration.a,
            ItemCalibration.b,
            ItemCalibration.c,
            ItemCalibration.D,
            Question.external_ref,
        )
        .join(QuestionPublication, QuestionPublication.question_version_id == QuestionVersion.id)
        .join(Question, Question.id == QuestionVersion.question_id)
        .outerjoin(Topic, Topic.id == QuestionVersion.topic_id)
        .outerjoin(
            ItemCalibration,
            and_(ItemCalibration.question_version_id == QuestionVersion.id, ItemCalibration.is_current),
        )
        .where(
            QuestionPublication.tenant_id == tenant_id,
            QuestionPublication.exam_code == exam_code,
            Question.is_deleted.is_(False),
        )
        .order_by(QuestionVersion.question_id)
    ).all()
    columns = {
        k: []
        for k in (
            "question_id",
            "question_version_id",
            "version",
            "topic_id",
            "topic",
            "difficulty_label",
            "calibration_id",
            "a",
            "b",
            "c",
            "D",
            "ref",
        )
    }
    for qid, vid, version, topic_id, topic, label, cal_id, a, b, c, d, ref in rows:
        columns["question_id"].append(int(qid))
        columns["question_version_id"].append(int(vid))
        columns["version"].append(int(version))
        columns["topic_id"].append(None if topic_id is None else int(topic_id))
        columns["topic"].append(topic or "")
        columns["difficulty_label"].append(label or "")
        columns["calibration_id"].append(None if cal_id is None else int(cal_id))
        if cal_id is None:
            a, b, c, d = 1.0, PROVISIONAL_B.get(label, 0.0), 0.0, 1.0
        columns["a"].append(float(a))
        columns["b"].append(float(b))
        columns["c"].append(float(c))
        columns["D"].append(float(d))
        columns["ref"].append(ref if ref else f"question:{qid}")
    return columns


def ensure_snapshot(session: Session, tenant_id: str, exam_code: str) -> str:
    """Id of the snapshot of the exam's current pool, writing it if new (no commit).

    Raises
    ------
    NotFound
        When the exam has no published items.
    """
    items = _snapshot_items(session, tenant_id, exam_code)
    if not items["question_id"]:
        raise NotFound(f"exam {exam_code!r} has no published items")
    canonical = json.dumps(
        {"tenant": tenant_id, "exam": exam_code, "items": items}, sort_keys=True, separators=(",", ":")
    )
    snapshot_id = hashlib.sha256(canonical.encode()).hexdigest()
    if session.scalar(select(PoolSnapshot.id).where(PoolSnapshot.id == snapshot_id)) is None:
        try:
            with session.begin_nested():
                session.add(
                    PoolSnapshot(
                        id=snapshot_id,
                        tenant_id=tenant_id,
                        exam_code=exam_code,
                        n_items=len(items["question_id"]),
                        items=items,
                    )
                )
        except IntegrityError:
            pass  # another request wrote the same content first
    return snapshot_id


def _refs(session: Session, question_ids) -> list[str]:
    """References of a snapshot written before snapshots carried them."""
    refs = dict(
        session.execute(select(Question.id, Question.external_ref).where(Question.id.in_(question_ids))).all()
    )
    return [refs.get(q) or f"question:{q}" for q in question_ids]


def pool_view(session: Session, snapshot_id: str) -> PoolView:
    """The (cached) arrays of a snapshot."""
    views = _caches(session).views
    view = views.get(snapshot_id)
    if view is not None:
        return view
    snapshot = session.get(PoolSnapshot, snapshot_id)
    if snapshot is None:
        raise NotFound(f"pool snapshot {snapshot_id} not found")
    items = snapshot.items
    topic = np.array(items["topic"], dtype=object)
    topic_names = sorted(set(items["topic"]))
    pool = ItemPool.from_arrays(
        items["a"],
        items["b"],
        items["c"],
        items["D"],
        item_id=[str(q) for q in items["question_id"]],
        topic=topic,
        name=f"{snapshot.exam_code}@{snapshot_id[:12]}",
    )
    view = PoolView(
        snapshot_id=snapshot_id,
        pool=pool,
        question_id=np.array(items["question_id"], dtype=np.int64),
        question_version_id=np.array(items["question_version_id"], dtype=np.int64),
        version=np.array(items["version"], dtype=np.int64),
        calibration_id=list(items["calibration_id"]),
        topic_id=list(items["topic_id"]),
        topic_code=np.searchsorted(np.array(topic_names, dtype=object), topic).astype(np.intp),
        topic_names=topic_names,
        difficulty_label=np.array(items["difficulty_label"], dtype=object),
        ref=np.array(items.get("ref") or _refs(session, items["question_id"]), dtype=object),
    )
    views.put(snapshot_id, view)
    return view


@dataclass(frozen=True)
class ItemContent:
    """One question version: what a student may see, and the key kept for after the answer."""

    question_version_id: int
    stem_md: str
    lead_in: str
    options: tuple  # ((label, text), ...) in label order
    correct_option: str
    rationale_md: str

    @property
    def labels(self) -> tuple:
        return tuple(label for label, _ in self.options)


def item_contents(session: Session, version_ids) -> dict[int, ItemContent]:
    """Contents of the given question versions, by version id (cached)."""
    contents = _caches(session).contents
    out, missing = {}, []
    for vid in {int(v) for v in version_ids}:
        content = contents.get(vid)
        if content is None:
            missing.append(vid)
        else:
            out[vid] = content
    if missing:
        versions = session.execute(
            select(
                QuestionVersion.id,
                QuestionVersion.stem_md,
                QuestionVersion.lead_in,
                QuestionVersion.rationale_md,
            ).where(QuestionVersion.id.in_(missing))
        ).all()
        options: dict[int, list] = {}
        for vid, label, text, is_correct in session.execute(
            select(
                QuestionOption.question_version_id,
                QuestionOption.option_label,
                QuestionOption.option_text_md,
                QuestionOption.is_correct,
            )
            .where(QuestionOption.question_version_id.in_(missing))
            .order_by(QuestionOption.option_label)
        ):
            options.setdefault(vid, []).append((label, text, is_correct))
        for vid, stem, lead_in, rationale in versions:
            opts = options.get(vid, [])
            keys = [label for label, _, ok in opts if ok]
            content = ItemContent(
                vid,
                stem,
                lead_in,
                tuple((label, text) for label, text, _ in opts),
                keys[0] if keys else "",
                rationale,
            )
            contents.put(vid, content)
            out[vid] = content
    return out
