"""Analytics schema: the ``blueprint_targets`` table and the four read-only SQL views.

``blueprint_targets`` lives on the service's ``Base`` (it is a table like any other, created by
migration ``0002_analytics``). The views are described on a separate ``MetaData`` so that
``Base.metadata`` never tries to create, empty or drop them; the migration owns their SQL. The
``Table`` objects below only give SQLAlchemy Core the column types, so a ``SELECT`` returns the
same Python types on SQLite and PostgreSQL (``day`` as a ``date``, counts as ``int``).

Views (one row per ...):

``analytics_topic_mastery``
    tenant, exam, user, topic and UTC day with answers: ``attempts``, ``correct``, ``accuracy``,
    ``timed_attempts`` / ``total_time_ms`` / ``mean_time_ms`` (client-reported time per answer),
    ``latest_theta`` / ``latest_se`` (the quiz's EAP estimate after the user's last answer in that
    topic that day; the service keeps one theta per quiz, not per topic) and running totals over
    days ``cumulative_attempts``, ``cumulative_correct``, ``cumulative_accuracy``. ``correct``
    counts answers with full credit; partial credit (items scored ``0 .. m-1``, GRM/GPCM) is in
    ``points`` (sum of the answers' scores), ``max_points`` (sum of the answered items' top
    scores ``m - 1``), ``credit = points / max_points`` and their running totals
    ``cumulative_points``, ``cumulative_max_points``, ``cumulative_credit`` (migration 0019; on
    0/1 items they equal ``correct``, ``attempts`` and ``accuracy``).
``analytics_blueprint_coverage``
    tenant, exam, topic and difficulty label (``'unlabelled'`` when none) that has live items or a
    target: ``published_items`` (live publications of questions not deleted), ``target_items``
    (NULL without a target), ``gap_items`` (items missing to reach the target, 0 when met),
    ``coverage_ratio`` and ``status`` (``short``, ``met`` or ``untargeted``).
``analytics_item_exposure_daily``
    tenant, exam, UTC day and question served that day: ``administrations``, ``sessions`` (quizzes
    of the exam served any item that day) and ``exposure_rate = administrations / sessions``.
``analytics_selector_outcomes``
    tenant, exam, selection rule and how the quiz got it (``assignment``: cohort, flag, default,
    request for linear forms): ``quizzes``, ``users``, ``quizzes_finished``, ``quizzes_with_items``,
    ``mean_items_served``, ``mean_final_theta`` / ``mean_final_se`` / ``mean_answered`` /
    ``mean_score`` (finished quizzes; the share of answers with full credit), ``max_exposure_rate``
    (largest share of the arm's quizzes with items that were administered one question),
    ``test_overlap`` (mean share of items two of those quizzes have in common:
    ``sum_i n_i (n_i - 1) / (N (N - 1))`` over the mean test length; Chen, Ankenmann & Spray
    2003, as in ``qbank.simulation``) and ``mean_credit`` (finished quizzes: the mean of each
    quiz's points over its maximum points; ``mean_score`` on 0/1 items).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.models import Base, BigId, UTCDateTime, utcnow


class BlueprintTarget(Base):
    """How many live items an exam's blueprint wants per topic and difficulty label."""

    __tablename__ = "blueprint_targets"
    __table_args__ = (CheckConstraint("target_items >= 0", name="ck_blueprint_targets_nonnegative"),)

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    exam_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic_id: Mapped[int] = mapped_column(BigId, ForeignKey("topics.id"), primary_key=True)
    difficulty_label: Mapped[str] = mapped_column(String(16), primary_key=True)
    target_items: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


VIEWS = MetaData()

topic_mastery = Table(
    "analytics_topic_mastery",
    VIEWS,
    Column("tenant_id", String),
    Column("exam_code", String),
    Column("user_id", String),
    Column("topic_id", BigInteger),
    Column("topic_name", String),
    Column("day", Date),
    Column("attempts", BigInteger),
    Column("correct", BigInteger),
    Column("accuracy", Float),
    Column("timed_attempts", BigInteger),
    Column("total_time_ms", BigInteger),
    Column("mean_time_ms", Float),
    Column("latest_theta", Float),
    Column("latest_se", Float),
    Column("cumulative_attempts", BigInteger),
    Column("cumulative_correct", BigInteger),
    Column("cumulative_accuracy", Float),
    Column("points", BigInteger),
    Column("max_points", BigInteger),
    Column("credit", Float),
    Column("cumulative_points", BigInteger),
    Column("cumulative_max_points", BigInteger),
    Column("cumulative_credit", Float),
)

blueprint_coverage = Table(
    "analytics_blueprint_coverage",
    VIEWS,
    Column("tenant_id", String),
    Column("exam_code", String),
    Column("topic_id", BigInteger),
    Column("topic_name", String),
    Column("blueprint_code", String),
    Column("difficulty_label", String),
    Column("published_items", BigInteger),
    Column("target_items", BigInteger),
    Column("gap_items", BigInteger),
    Column("coverage_ratio", Float),
    Column("status", String),
)

item_exposure_daily = Table(
    "analytics_item_exposure_daily",
    VIEWS,
    Column("tenant_id", String),
    Column("exam_code", String),
    Column("day", Date),
    Column("question_id", BigInteger),
    Column("external_ref", String),
    Column("administrations", BigInteger),
    Column("sessions", BigInteger),
    Column("exposure_rate", Float),
)

selector_outcomes = Table(
    "analytics_selector_outcomes",
    VIEWS,
    Column("tenant_id", String),
    Column("exam_code", String),
    Column("selector_rule", String),
    Column("assignment", String),
    Column("quizzes", BigInteger),
    Column("users", BigInteger),
    Column("quizzes_finished", BigInteger),
    Column("quizzes_with_items", BigInteger),
    Column("mean_items_served", Float),
    Column("mean_final_theta", Float),
    Column("mean_final_se", Float),
    Column("mean_answered", Float),
    Column("mean_score", Float),
    Column("max_exposure_rate", Float),
    Column("test_overlap", Float),
    Column("mean_credit", Float),
)

ANALYTICS_VIEWS = {
    t.name: t for t in (topic_mastery, blueprint_coverage, item_exposure_daily, selector_outcomes)
}
