"""Tables of exposure administration (issue 6), created by migration ``0003_exposure_admin``.

They live on the service's ``Base`` beside ``exposure_bundles`` (the bundle revisions, the one
store of K; the per-item and per-stratum copies of K went in migration 0014):

``item_daily_exposures``
    Administrations per question version and UTC day: the counter behind the daily exposure
    cap, incremented by one conditional UPSERT per served item.
``exposure_bundle_info``
    What the service knows about a bundle beyond its document: where it came from, whether it
    carries a new calibration to import on promotion, and the per-item exposure rates its rules
    predict (computed once by simulation, for the observed-versus-predicted report).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.models import Base, BigId


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
    # The last validation run of the revision: running | passed | failed, its progress in [0, 1].
    validation_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    validation_progress: Mapped[float | None] = mapped_column(Float, nullable=True)
    validation_message: Mapped[str | None] = mapped_column(Text, nullable=True)
