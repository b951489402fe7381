"""SQLAlchemy 2 tables of the delivery service (request/response schemas live in ``schemas.py``).

The scaffold's schema (topics, questions, versions, options, publications, quiz sessions,
quiz items, responses, item calibration, feature flags, cohort assignments; its per-item
exposure-control rows went in migration 0014: K lives in bundle revisions only) plus what a real service needs: users, exposure bundles, pool snapshots,
outbox events and an audit log. Every tenant-owned row carries ``tenant_id`` and every
query filters on it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value if value is None else value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def _full_credit_score(context) -> int:
    """A row written without ``score`` (the scaffold's dichotomous writers): 1 when correct, else 0."""
    return int(bool(context.get_current_parameters()["is_correct"]))


class Base(DeclarativeBase):
    pass


# ------------------------------------------------------------------ identity
class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "username"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(Text)
    roles: Mapped[list] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ------------------------------------------------------------------ content
class Topic(Base):
    __tablename__ = "topics"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("topics.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    blueprint_code: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = (UniqueConstraint("tenant_id", "external_ref"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    external_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class QuestionVersion(Base):
    """One immutable revision of a question; ``state`` is draft, published or retired."""

    __tablename__ = "question_versions"
    __table_args__ = (UniqueConstraint("question_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    question_id: Mapped[int] = mapped_column(BigId, ForeignKey("questions.id"))
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    stem_md: Mapped[str] = mapped_column(Text)
    lead_in: Mapped[str] = mapped_column(Text)
    rationale_md: Mapped[str] = mapped_column(Text)
    difficulty_label: Mapped[str | None] = mapped_column(String(16), nullable=True)
    bloom_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    topic_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("topics.id"), nullable=True)
    tags: Mapped[dict] = mapped_column(JSON, default=dict)
    assets: Mapped[list] = mapped_column(JSON, default=list)
    references: Mapped[list] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QuestionOption(Base):
    __tablename__ = "question_options"
    __table_args__ = (UniqueConstraint("question_version_id", "option_label"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    question_version_id: Mapped[int] = mapped_column(BigId, ForeignKey("question_versions.id"))
    option_label: Mapped[str] = mapped_column(String(1))
    option_text_md: Mapped[str] = mapped_column(Text)
    # Full credit: the option with the top score (the key).
    is_correct: Mapped[bool] = mapped_column(Boolean)
    # Credit the option earns, 0 .. m-1 (m score categories; 0/1 for a dichotomous item).
    score: Mapped[int] = mapped_column(Integer, default=_full_credit_score)


class QuestionPublication(Base):
    """Which version of a question is live for an exam."""

    __tablename__ = "question_publications"
    __table_args__ = (
        UniqueConstraint("tenant_id", "question_id", "exam_code"),
        Index("ix_publications_exam", "tenant_id", "exam_code"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    question_id: Mapped[int] = mapped_column(BigId, ForeignKey("questions.id"))
    exam_code: Mapped[str] = mapped_column(String(64))
    live_version: Mapped[int] = mapped_column(Integer)
    question_version_id: Mapped[int] = mapped_column(BigId, ForeignKey("question_versions.id"))
    published_by: Mapped[str] = mapped_column(String(128))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ------------------------------------------------------------------ psychometrics
class ItemCalibration(Base):
    """IRT parameters of one question version; the newest import is ``is_current``."""

    __tablename__ = "item_calibration"
    __table_args__ = (Index("ix_calibration_version", "question_version_id", "is_current"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    question_id: Mapped[int] = mapped_column(BigId, ForeignKey("questions.id"))
    question_version_id: Mapped[int] = mapped_column(BigId, ForeignKey("question_versions.id"))
    version: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(8))  # 1PL/2PL/3PL, or GRM/GPCM with thresholds
    a: Mapped[float] = mapped_column(Float)
    b: Mapped[float] = mapped_column(Float)
    c: Mapped[float] = mapped_column(Float)
    D: Mapped[float] = mapped_column(Float)
    # [b1, .., b{m-1}] of a GRM/GPCM item (b is then their mean, c = 0); null when dichotomous
    thresholds: Mapped[list | None] = mapped_column(JSON, nullable=True)
    n_respondents: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str] = mapped_column(String(256))
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExposureBundle(Base):
    """A bundle revision: the one store of K (see DESIGN.md). ``status``: staged | draft (made by
    the nightly job) | unvalidated (a derived revision before a validation passed) | active |
    superseded; ``parent_id`` and ``reason`` for a revision derived from another, whose author is
    ``created_by``."""

    __tablename__ = "exposure_bundles"
    __table_args__ = (Index("ix_bundles_exam", "tenant_id", "exam_code", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    exam_code: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    schema: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="staged")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    promoted_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    parent_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("exposure_bundles.id"), nullable=True
    )
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class FeatureFlag(Base):
    __tablename__ = "feature_flags"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    value_json: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CohortAssignment(Base):
    __tablename__ = "cohort_assignments"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    cohort_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    cohort_value: Mapped[str] = mapped_column(String(128))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ------------------------------------------------------------------ delivery
class PoolSnapshot(Base):
    """The item pool a quiz runs on, frozen when it starts and shared by identical pools.

    ``items`` holds column lists in pool order (sorted by question id): question and version
    ids, references, calibration ids and parameters, topics and difficulty labels. The id is the
    SHA-256 of that content, so any instance can cache it forever.
    """

    __tablename__ = "pool_snapshots"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    exam_code: Mapped[str] = mapped_column(String(64))
    n_items: Mapped[int] = mapped_column(Integer)
    items: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QuizSession(Base):
    """A quiz: its settings, pinned pool and selector, and the running ability estimate."""

    __tablename__ = "quiz_sessions"
    __table_args__ = (
        Index("ix_quiz_user", "tenant_id", "user_id"),
        Index("ix_quiz_created", "tenant_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(8))
    adaptive: Mapped[bool] = mapped_column(Boolean, default=True)
    exam_code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    filters: Mapped[dict] = mapped_column(JSON)
    blueprint: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    selector: Mapped[dict] = mapped_column(JSON)
    stopping: Mapped[dict] = mapped_column(JSON)
    pool_snapshot_id: Mapped[str] = mapped_column(String(64), ForeignKey("pool_snapshots.id"))
    exposure_bundle_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("exposure_bundles.id"), nullable=True
    )
    plan: Mapped[list | None] = mapped_column(JSON, nullable=True)
    withdrawn: Mapped[list] = mapped_column(JSON, default=list)
    n_served: Mapped[int] = mapped_column(Integer, default=0)
    n_answered: Mapped[int] = mapped_column(Integer, default=0)
    n_correct: Mapped[int] = mapped_column(Integer, default=0)
    theta: Mapped[float] = mapped_column(Float)
    se: Mapped[float] = mapped_column(Float)
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class QuizItem(Base):
    """An item served to a quiz at a position (the pending one until answered)."""

    __tablename__ = "quiz_items"
    __table_args__ = (UniqueConstraint("quiz_id", "position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    quiz_id: Mapped[str] = mapped_column(String(36), ForeignKey("quiz_sessions.id"))
    position: Mapped[int] = mapped_column(Integer)
    pool_index: Mapped[int] = mapped_column(Integer)
    question_id: Mapped[int] = mapped_column(BigId, ForeignKey("questions.id"))
    version: Mapped[int] = mapped_column(Integer)
    question_version_id: Mapped[int] = mapped_column(BigId, ForeignKey("question_versions.id"))
    calibration_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("item_calibration.id"), nullable=True
    )
    theta_before: Mapped[float] = mapped_column(Float)
    se_before: Mapped[float] = mapped_column(Float)
    served_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserResponse(Base):
    """One answer: what was chosen, against which version and calibration, and theta/SE around it."""

    __tablename__ = "user_responses"
    __table_args__ = (
        UniqueConstraint("quiz_id", "position"),
        Index("ix_responses_item", "question_id", "version", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    quiz_id: Mapped[str] = mapped_column(String(36), ForeignKey("quiz_sessions.id"))
    position: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String(128))
    question_id: Mapped[int] = mapped_column(BigId, ForeignKey("questions.id"))
    version: Mapped[int] = mapped_column(Integer)
    question_version_id: Mapped[int] = mapped_column(BigId, ForeignKey("question_versions.id"))
    calibration_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("item_calibration.id"), nullable=True
    )
    option_label: Mapped[str] = mapped_column(String(1))
    is_correct: Mapped[bool] = mapped_column(Boolean)  # full credit
    score: Mapped[int] = mapped_column(Integer, default=_full_credit_score)  # the category response
    time_taken_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    server_elapsed_ms: Mapped[int] = mapped_column(Integer)
    client_latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    theta_before: Mapped[float] = mapped_column(Float)
    se_before: Mapped[float] = mapped_column(Float)
    theta_after: Mapped[float] = mapped_column(Float)
    se_after: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ------------------------------------------------------------------ operations
class OutboxEvent(Base):
    """Events written in the same transaction as the change; a relay/CDC ships them on."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_unpublished", "published_at", "id"),
        # the relay's per-quiz order check looks up a quiz's earlier unsent events
        Index("ix_outbox_aggregate", "aggregate_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    aggregate_type: Mapped[str] = mapped_column(String(64))
    aggregate_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OutboxRelayLease(Base):
    """Which relay may ship the outbox on SQLite (one at a time) and until when; a relay renews
    its lease every batch, and another takes over only after it expired."""

    __tablename__ = "outbox_relay_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_tenant_time", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
