"""Item calibrations imported from a pool file (``qbank import-calibration`` or the admin API).

A pool row's ``item_id`` is a question's ``external_ref``. With the calibration report that
``qbank calibrate`` writes beside the pool, :func:`check_against_report` records each item's
respondents and stops the items the calibration flags ``poorly_determined``. The parameters are tied to the
question's newest published version (or its newest version when none is published yet);
earlier calibrations of that version stay in the table, no longer current. A GRM or GPCM item
(pool columns ``model, b1, b2, ...``) stores its model and thresholds; its number of score
categories must equal the number of distinct option scores of that version (2 for a
dichotomous item), or nothing is imported.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from qbank._messages import shown
from qbank.calibration import CalibrationError, CalibrationReport
from qbank.polytomous import DICHOTOMOUS, MODEL_NAMES
from qbank.pool import ItemPool, PoolError
from service.errors import Invalid
from service.events import audit
from service.models import ItemCalibration, Question, QuestionOption, QuestionVersion


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


POLICIES = ("refuse", "skip", "keep")


@dataclass
class CheckedPool:
    """A pool checked against its calibration report: what to import and what to record."""

    pool: ItemPool
    n_respondents: dict[str, int] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


class PoorlyDetermined(Invalid):
    """The report flags items poorly determined and the policy does not let them (all) through."""


def report_items_from_bytes(content: bytes, source: str) -> pd.DataFrame:
    """The items of an uploaded calibration report; :class:`Invalid` says what is wrong."""
    try:
        return CalibrationReport.items_from_json(content, source)
    except CalibrationError as exc:
        raise Invalid(str(exc)) from None


def check_against_report(
    pool: ItemPool,
    items: pd.DataFrame,
    pool_name: str,
    report_name: str,
    policy: str = "refuse",
    option: str = "poorly_determined={}",
) -> CheckedPool:
    """Check ``pool`` against its report's ``items`` (:meth:`CalibrationReport.read_items`).

    The report must cover every item with the same parameters (to the pool CSV's six
    decimals; a GRM/GPCM item's thresholds ``b1, b2, ...`` too). Items it flags ``poorly_determined`` are refused (``policy='refuse'``), left
    out (``'skip'``) or imported anyway (``'keep'``); the choice goes into ``details`` for the
    audit record. ``option`` spells the policy setting for the caller's interface in messages.

    Raises
    ------
    PoorlyDetermined
        Flagged items under ``'refuse'``, nothing left under ``'skip'``.
    Invalid
        A report of another pool.
    ValueError
        An unknown ``policy`` (the CLI and the API accept only :data:`POLICIES`).
    """
    if policy not in POLICIES:
        raise ValueError(
            f"policy must be one of {list(POLICIES)}, got {policy!r}"
        )  # the interfaces validate it
    ids = [str(i) for i in pool.item_id]
    absent = [i for i in ids if i not in items.index]
    if absent:
        raise Invalid(
            f"{report_name} does not cover {len(absent)} item(s) of {pool_name}: {shown(absent)}; "
            "is it this pool's report?"
        )
    reported = items.loc[ids]
    # The report holds D * a (D = 1); a report of another calibration disagrees here.
    differs = ~np.all(
        [
            np.isclose(reported[k].astype(float), v, rtol=0, atol=2e-6)
            for k, v in (("a", pool.a * pool.D), ("b", pool.b), ("c", pool.c))
        ],
        axis=0,
    )
    if pool.is_polytomous:  # a GRM/GPCM item's b is only the mean of its thresholds: compare those
        for k, steps in enumerate(pool.thresholds.T):
            column = f"b{k + 1}"
            given = (
                reported[column].astype(float).to_numpy()
                if column in reported.columns
                else np.full(len(ids), np.nan)
            )
            differs |= np.where(
                np.isnan(steps), ~np.isnan(given), ~np.isclose(given, steps, rtol=0, atol=2e-6)
            )
    if differs.any():
        raise Invalid(
            f"{report_name} has other parameters than {pool_name} for {int(differs.sum())} item(s): "
            f"{shown(reported.index[differs])}; is it this pool's report?"
        )
    flagged = [str(i) for i in reported.index[reported["poorly_determined"]]]
    checked = CheckedPool(
        pool, {str(i): int(n) for i, n in reported["n"].dropna().items()}, {"report": report_name}
    )
    if not flagged:
        return checked
    if policy == "refuse":
        raise PoorlyDetermined(
            f"{len(flagged)} item(s) are poorly determined in {report_name} (se_b above the limit or at "
            f"a bound): {shown(flagged)}; pass {option.format('skip')} to import the others, or "
            f"{option.format('keep')} to import them too"
        )
    if policy == "skip":
        if len(flagged) == len(ids):
            raise PoorlyDetermined(
                f"every item of {pool_name} is poorly determined in {report_name}; nothing to import"
            )
        checked.pool = pool.subset(np.flatnonzero(~reported["poorly_determined"].to_numpy()))
        checked.skipped = checked.details["skipped_poorly_determined"] = flagged
    else:
        checked.kept = checked.details["kept_poorly_determined"] = flagged
    return checked


def item_models(pool: ItemPool) -> tuple[list[str], list]:
    """Each item's model name and thresholds as stored in ``item_calibration``: 'GRM' or 'GPCM'
    with the list ``[b1, ..]``, or the dichotomous items' simplest common model ('1PL', '2PL',
    '3PL', as the pool's :attr:`~qbank.pool.ItemPool.model` says) with None."""
    codes = pool.model_codes
    dichotomous = np.flatnonzero(codes == DICHOTOMOUS)
    plain = pool.subset(dichotomous).model if dichotomous.size else None
    models, thresholds = [], []
    for code, steps in zip(codes, pool.threshold_table):
        models.append(plain if code == DICHOTOMOUS else MODEL_NAMES[code])
        thresholds.append(None if code == DICHOTOMOUS else [float(t) for t in steps if not np.isnan(t)])
    return models, thresholds


def check_categories(session: Session, pool: ItemPool, version_ids: list[int], source: str) -> None:
    """Each item's calibration has as many score categories as its question version has distinct
    option scores (2 for a dichotomous item); :class:`Invalid` names the items that do not."""
    distinct = dict(
        session.execute(
            select(QuestionOption.question_version_id, func.count(func.distinct(QuestionOption.score)))
            .where(QuestionOption.question_version_id.in_(set(version_ids)))
            .group_by(QuestionOption.question_version_id)
        ).all()
    )
    wanted = pool.n_categories
    bad = [
        f"{item_id} ({int(m)} in the calibration, {distinct.get(vid, 0)} option scores)"
        for item_id, m, vid in zip(pool.item_id, wanted, version_ids)
        if int(m) != distinct.get(vid, 0)
    ]
    if bad:
        raise Invalid(
            f"{source}: the number of score categories (model, b1, b2, ...) must equal the number of "
            f"distinct option scores of the question; bad items: {shown(bad)}"
        )


def import_calibration(
    session: Session,
    tenant_id: str,
    actor: str,
    pool: ItemPool,
    source: str,
    *,
    n_respondents: Mapping[str, int] | None = None,
    details: Mapping | None = None,
) -> int:
    """Store ``pool``'s parameters as the current calibration of the matching questions; commits.

    ``n_respondents`` (item_id -> responses the calibration used, from its report) fills that
    column where known; ``details`` are added to the audit record (e.g. items left out).

    Raises
    ------
    Invalid
        When any ``item_id`` matches no question of the tenant (nothing is imported).
    """
    item_ids = [str(i) for i in pool.item_id]
    questions = dict(
        session.execute(
            select(Question.external_ref, Question.id).where(
                Question.tenant_id == tenant_id,
                Question.external_ref.in_(item_ids),
                Question.is_deleted.is_(False),
            )
        ).all()
    )
    unknown = [i for i in item_ids if i not in questions]
    if unknown:
        raise Invalid(
            f"{source}: {len(unknown)} item_id(s) match no question's external_ref, e.g. {unknown[:10]}"
        )
    rows = session.execute(
        select(
            QuestionVersion.question_id, QuestionVersion.id, QuestionVersion.version, QuestionVersion.state
        ).where(QuestionVersion.question_id.in_(questions.values()))
    ).all()
    target: dict[int, tuple] = {}
    for question_id, version_id, version, state in rows:
        rank = (state == "published", version)
        if question_id not in target or rank > target[question_id][0]:
            target[question_id] = (rank, version_id, version)
    version_ids = [target[q][1] for q in questions.values()]
    check_categories(session, pool, [target[questions[i]][1] for i in item_ids], source)
    session.execute(
        update(ItemCalibration)
        .where(ItemCalibration.question_version_id.in_(version_ids), ItemCalibration.is_current)
        .values(is_current=False)
    )
    model = pool.model
    models, thresholds = item_models(pool)
    session.add_all(
        ItemCalibration(
            tenant_id=tenant_id,
            question_id=questions[item_id],
            question_version_id=target[questions[item_id]][1],
            version=target[questions[item_id]][2],
            model=item_model,
            a=float(a),
            b=float(b),
            c=float(c),
            D=float(d),
            thresholds=steps,
            n_respondents=(n_respondents or {}).get(item_id),
            source=source[:256],
            is_current=True,
        )
        for item_id, a, b, c, d, item_model, steps in zip(
            item_ids, pool.a, pool.b, pool.c, pool.D, models, thresholds
        )
    )
    audit(
        session,
        tenant_id,
        actor,
        "calibration.import",
        "pool",
        pool.sha256()[:16],
        {"source": source, "n_items": len(item_ids), "model": model, **(details or {})},
    )
    session.commit()
    return len(item_ids)
