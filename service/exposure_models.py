"""Tables of exposure administration (issue 6), created by migration ``0003_exposure_admin``.

They live on the service's ``Base`` beside the scaffold's ``item_exposure_control`` (one ``sh_p``
per question version, the classic Sympson-Hetter parameter in force) and ``exposure_bundles``
(the uploaded documents):

``item_exposure_strata``
    The conditional Sympson-Hetter parameters in force: one ``sh_p`` per question version and
    theta stratum, written by promoting a ``conditional_sympson_hetter`` bundle (or a manual
    override of one stratum).
``exposure_k_sets``
    The per-stratum parameters a conditional quiz pinned when it started, content-addressed
    like ``pool_snapshots`` (rows in the snapshot's pool order), so a served sequence replays
    even after a later promotion.
``item_daily_exposures``
    Administrations per question version and UTC day: the counter behind the daily exposure
    cap, incremented by one conditional UPSERT per served item.
``exposure_bundle_info``
    What the service knows about a bundle beyond its document: where it came from, whether it
    carries a new calibration to import on promotion, and the per-item exposure rates its rules
    predict (computed once by simulation, for the observed-versus-predicted report).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.models import Base, BigId, UTCDateTime, utcnow


class ItemExposureStratum(Base):
    """``K_ij`` in force for question version i in theta stratum j (``theta_low <= theta < theta_high``)."""

    __tablename__ = "item_exposure_strata"
    __table_args__ = (Index("ix_exposure_strata_tenant", "tenant_id"),)

    question_id: Mapped[int] = mapped_column(BigId, ForeignKey("questions.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    stratum: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    theta_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    theta_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    sh_p: Mapped[float] = mapped_column(Float)
    bundle_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("exposure_bundles.id"), nullable=True
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ExposureKSet(Base):
    """Per-stratum parameters pinned by quizzes: ``sh_p`` is (n_items, n_strata) in pool order."""

    __tablename__ = "exposure_k_sets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    theta_cuts: Mapped[list] = mapped_column(JSON)
    sh_p: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ItemDailyExposure(Base):
    """How many quizzes were served a question version on one UTC day."""

    __tablename__ = "item_daily_exposures"

    question_id: Mapped[int] = mapped_column(BigId, ForeignKey("questions.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    administrations: Mapped[int] = mapped_column(Integer)


class ExposureBundleInfo(Base):
    """Service-side facts about an exposure bundle (its document stays as uploaded)."""

    __tablename__ = "exposure_bundle_info"

    bundle_id: Mapped[str] = mapped_column(String(36), ForeignKey("exposure_bundles.id"), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    carries_calibration: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    predicted_rates: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    predicted_examinees: Mapped[int | None] = mapped_column(Integer, nullable=True)
    predicted_seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
