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
calibration id, so analytics can tell them apart. A provisional item with ``m >= 3`` option
scores is a partial credit item (GPCM with ``a = 1``, Masters 1982) with its ``m - 1`` steps
spread evenly over ``b ± 1``.

A pool with GRM/GPCM items (issue 18) carries two more columns in its snapshot, ``model``
('' for a dichotomous item) and ``thresholds`` (a list per item, empty when dichotomous); a
dichotomous pool's snapshot has neither, so its content and id are what they always were.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qbank.polytomous import DICHOTOMOUS, MODEL_CODES
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
    """Per-database caches of immutable rows: pool views by snapshot id, contents by version id,
    and the served items and answers of recent quizzes (append-only rows, checked against the
    quiz's counters before use: :func:`service.quiz_rows.served_with_answers`)."""

    def __init__(self, n_views: int = 32, n_contents: int = 20_000, n_quizzes: int = 2048):
        self.views = _LRU(n_views)
        self.contents = _LRU(n_contents)
        self.quizzes = _LRU(n_quizzes)


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
            ItemCalibration.model,
            ItemCalibration.thresholds,
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
    models, thresholds = [], []
    categories = _uncalibrated_categories(session, [r[1] for r in rows if r[6] is None])
    for qid, vid, version, topic_id, topic, label, cal_id, a, b, c, d, ref, model, steps in rows:
        columns["question_id"].append(int(qid))
        columns["question_version_id"].append(int(vid))
        columns["version"].append(int(version))
        columns["topic_id"].append(None if topic_id is None else int(topic_id))
        columns["topic"].append(topic or "")
        columns["difficulty_label"].append(label or "")
        columns["calibration_id"].append(None if cal_id is None else int(cal_id))
        if cal_id is None:
            a, b, c, d = 1.0, PROVISIONAL_B.get(label, 0.0), 0.0, 1.0
            m = categories.get(int(vid), 2)
            model, steps = ("GPCM", np.linspace(b - 1.0, b + 1.0, m - 1).tolist()) if m > 2 else ("", None)
        polytomous = MODEL_CODES.get(str(model or "").upper(), DICHOTOMOUS) != DICHOTOMOUS
        models.append(str(model).upper() if polytomous else "")
        thresholds.append([float(t) for t in steps] if polytomous else [])
        columns["a"].append(float(a))
        columns["b"].append(float(b))
        columns["c"].append(float(c))
        columns["D"].append(float(d))
        columns["ref"].append(ref if ref else f"question:{qid}")
    if any(models):  # only then: a dichotomous pool's snapshot keeps its content and id
        columns["model"], columns["thresholds"] = models, thresholds
    return columns


def _uncalibrated_categories(session: Session, version_ids: list) -> dict[int, int]:
    """Number of score categories (top option score + 1) of the given question versions."""
    if not version_ids:
        return {}
    rows = session.execute(
        select(QuestionOption.question_version_id, func.max(QuestionOption.score))
        .where(QuestionOption.question_version_id.in_(version_ids))
        .group_by(QuestionOption.question_version_id)
    ).all()
    return {int(vid): int(top) + 1 for vid, top in rows}


def _threshold_table(thresholds: list) -> np.ndarray:
    """Per-item threshold lists as an array of shape (n_items, M - 1), NaN-padded."""
    width = max(1, max(len(t) for t in thresholds))
    table = np.full((len(thresholds), width), np.nan)
    for i, steps in enumerate(thresholds):
        table[i, : len(steps)] = steps
    return table


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
    polytomous = "model" in items
    pool = ItemPool.from_arrays(
        items["a"],
        items["b"],
        items["c"],
        items["D"],
        item_id=[str(q) for q in items["question_id"]],
        topic=topic,
        name=f"{snapshot.exam_code}@{snapshot_id[:12]}",
        model=items["model"] if polytomous else None,
        thresholds=_threshold_table(items["thresholds"]) if polytomous else None,
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
    """One question version: what a student may see, and the key and the option scores kept
    for after the answer."""

    question_version_id: int
    stem_md: str
    lead_in: str
    options: tuple  # ((label, text), ...) in label order
    correct_option: str
    rationale_md: str
    scores: tuple = ()  # credit of each option, in label order (0/1 for a dichotomous item)

    @property
    def labels(self) -> tuple:
        return tuple(label for label, _ in self.options)

    @property
    def max_score(self) -> int:
        """Full credit, ``m - 1`` for ``m`` score categories."""
        return max(self.scores, default=1)

    def score_of(self, label: str) -> int:
        """The credit option ``label`` earns: the category response the estimator takes."""
        return self.scores[self.labels.index(label)]


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
        for vid, label, text, is_correct, score in session.execute(
            select(
                QuestionOption.question_version_id,
                QuestionOption.option_label,
                QuestionOption.option_text_md,
                QuestionOption.is_correct,
                QuestionOption.score,
            )
            .where(QuestionOption.question_version_id.in_(missing))
            .order_by(QuestionOption.option_label)
        ):
            options.setdefault(vid, []).append((label, text, is_correct, score))
        for vid, stem, lead_in, rationale in versions:
            opts = options.get(vid, [])
            keys = [label for label, _, ok, _ in opts if ok]
            content = ItemContent(
                vid,
                stem,
                lead_in,
                tuple((label, text) for label, text, _, _ in opts),
                keys[0] if keys else "",
                rationale,
                tuple(int(score) for *_, score in opts),
            )
            contents.put(vid, content)
            out[vid] = content
    return out
