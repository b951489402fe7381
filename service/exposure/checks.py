"""Checks of a bundle for an exam: the live items it must agree with and the refusal that names
the failed checks (:func:`check_against_live`, the same :func:`qbank.exposure.validate_bundle`
that ``qbank sh`` and ``qbank simulate`` use)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from qbank.exposure import (
    BUNDLE_JSON_SCHEMA,
    validate_bundle,
)
from qbank.exposure._bundle import _pool_from_items
from qbank.pool import ItemPool, PoolError
from service.errors import Invalid
from service.models import (
    ItemCalibration,
    Question,
    QuestionPublication,
    QuestionVersion,
)

CHECKS = ("malformed", "converged", "validation", "live_calibration", "checksum", "consistency")


class BundleRefused(Invalid):
    """A bundle that fails a check; ``checks`` names them (see :data:`CHECKS`), ``problems`` says why."""

    def __init__(self, checks: list[str], problems: list[str]):
        self.checks, self.problems = checks, problems
        listed = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        super().__init__(f"exposure bundle refused, failed check(s) {', '.join(checks)}: {listed}")


# ---------------------------------------------------------------------------- live items
def _live_items(session: Session, tenant_id: str, exam_code: str) -> pd.DataFrame:
    """The exam's live question versions with their current calibration, in question-id order.

    Columns ``ref`` (the external reference a bundle's ``item_id`` names, ``question:<id>`` when
    the question has none), ``question_id, version, question_version_id, calibration_id,
    model, a, b, c, D`` (parameters NaN when uncalibrated) and ``thresholds`` (a GRM/GPCM item's
    list ``[b1, ..]``, else None).
    """
    rows = session.execute(
        select(
            Question.external_ref,
            QuestionVersion.question_id,
            QuestionVersion.version,
            QuestionVersion.id,
            ItemCalibration.id,
            ItemCalibration.model,
            ItemCalibration.a,
            ItemCalibration.b,
            ItemCalibration.c,
            ItemCalibration.D,
            ItemCalibration.thresholds,
        )
        .join(QuestionPublication, QuestionPublication.question_version_id == QuestionVersion.id)
        .join(Question, Question.id == QuestionVersion.question_id)
        .outerjoin(
            ItemCalibration,
            (ItemCalibration.question_version_id == QuestionVersion.id) & ItemCalibration.is_current,
        )
        .where(
            QuestionPublication.tenant_id == tenant_id,
            QuestionPublication.exam_code == exam_code,
            Question.is_deleted.is_(False),
        )
        .order_by(QuestionVersion.question_id)
    ).all()
    frame = pd.DataFrame(
        rows,
        columns=[
            "external_ref",
            "question_id",
            "version",
            "question_version_id",
            "calibration_id",
            "model",
            "a",
            "b",
            "c",
            "D",
            "thresholds",
        ],
    )
    frame["ref"] = [
        ref if ref else f"question:{qid}" for ref, qid in zip(frame["external_ref"], frame["question_id"])
    ]
    for column in ("a", "b", "c", "D"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame.drop(columns="external_ref")


def _bundle_items_pool(bundle: dict) -> ItemPool:
    """The bundle's own items as a pool (item ids are question references; a GRM/GPCM item's
    ``model`` and ``thresholds`` included): the core's one reader of a bundle's items."""
    return _pool_from_items(bundle)


def _comparison_pool(
    bundle: dict, live: pd.DataFrame, exam_code: str, with_calibration: bool
) -> ItemPool | None:
    """The live pool in the bundle's item order (then the exam's items the bundle lacks), for
    :func:`validate_bundle`. With ``with_calibration`` the shared items take the bundle's
    parameters: only ids and order are compared, since promotion imports the bundle's calibration."""
    by_ref = live.set_index("ref")
    bundle_refs = [item["item_id"] for item in bundle["items"]]
    in_bundle = set(bundle_refs)
    order = [ref for ref in bundle_refs if ref in by_ref.index] + [
        ref for ref in by_ref.index if ref not in in_bundle
    ]
    if not order:
        return None
    frame = by_ref.loc[order, ["a", "b", "c", "D"]].reset_index()
    frame.columns = ["item_id", "a", "b", "c", "D"]
    params = {item["item_id"]: item for item in bundle["items"]}
    shared = frame["item_id"].isin(in_bundle).to_numpy()
    # Category parameters by reference: the live ones, or with ``with_calibration`` the bundle's.
    models, steps = live_categories(live)
    if with_calibration:
        for column in ("a", "b", "c"):
            frame.loc[shared, column] = [params[ref][column] for ref in frame.loc[shared, "item_id"]]
        frame.loc[shared, "D"] = [params[ref].get("D", bundle["D"]) for ref in frame.loc[shared, "item_id"]]
        for ref in frame.loc[shared, "item_id"]:
            models.pop(ref, None)
            steps.pop(ref, None)
            if params[ref].get("thresholds"):
                models[ref], steps[ref] = params[ref].get("model", ""), params[ref]["thresholds"]
    # Uncalibrated live items (reported separately) compare as provisional items.
    frame = frame.fillna({"a": 1.0, "b": 0.0, "c": 0.0, "D": 1.0})
    add_categories(frame, models, steps)
    return ItemPool.from_frame(frame, name=exam_code, source=f"live calibration of {exam_code}")


def live_categories(live: pd.DataFrame) -> tuple[dict, dict]:
    """Model name and thresholds by reference of the live GRM/GPCM items of :func:`_live_items`."""
    listed = [isinstance(t, list) and len(t) > 0 for t in live["thresholds"]]
    models = {r: m for r, m, ok in zip(live["ref"], live["model"], listed) if ok}
    steps = {r: t for r, t, ok in zip(live["ref"], live["thresholds"], listed) if ok}
    return models, steps


def add_categories(frame: pd.DataFrame, models: dict, steps: dict) -> None:
    """Columns ``model, b1, b2, ...`` for the GRM/GPCM items among ``frame``'s (``models`` and
    ``steps`` by reference), so the comparison pool is the calibrated mixed pool, checksum and all."""
    refs = [ref for ref in frame["item_id"] if ref in steps]
    if not refs:
        return
    frame["model"] = [str(models.get(ref, "")) if ref in steps else "" for ref in frame["item_id"]]
    for k in range(max(len(steps[ref]) for ref in refs)):
        frame[f"b{k + 1}"] = [
            float(steps[ref][k]) if ref in steps and k < len(steps[ref]) else np.nan
            for ref in frame["item_id"]
        ]


def _classify(problem: str) -> str:
    field = problem.split(":", 1)[0]
    if field.startswith("simulation.converged"):
        return "converged"
    if field.startswith("validation."):
        return "validation"
    if field in ("bundle_sha256", "pool.sha256"):
        return "checksum"
    if field == "items" and any(
        phrase in problem
        for phrase in (
            "parameters differ",
            "no entry for pool item",
            "not in the pool",
            "another order",
            "no live calibration",
        )
    ):
        return "live_calibration"
    return "consistency"


def check_against_live(
    session: Session,
    tenant_id: str,
    exam_code: str,
    document,
    *,
    with_calibration: bool = False,
    require_validation: bool = True,
) -> pd.DataFrame:
    """Check a bundle for ``exam_code``: schema, convergence, validation within ``r_max + tolerance``,
    checksums, and agreement with the live calibration (ids, order, parameters; with
    ``with_calibration`` ids and order only). Returns the live items.

    Raises
    ------
    BundleRefused
        Naming the failed check(s) (:data:`CHECKS`) and every problem.
    """
    from jsonschema import Draft202012Validator

    if not isinstance(document, dict):
        raise BundleRefused(
            ["malformed"], [f"(document): must be a JSON object, got {type(document).__name__}"]
        )
    if not Draft202012Validator(BUNDLE_JSON_SCHEMA).is_valid(document):
        raise BundleRefused(["malformed"], validate_bundle(document))
    live = _live_items(session, tenant_id, exam_code)
    if live.empty:
        raise BundleRefused(["live_calibration"], [f"exam_code: exam {exam_code!r} has no published items"])
    problems = []
    uncalibrated = live.loc[live["calibration_id"].isna(), "ref"].tolist()
    if uncalibrated and not with_calibration:
        problems.append(
            f"items: no live calibration for {uncalibrated[:10]}"
            + (f" and {len(uncalibrated) - 10} more" if len(uncalibrated) > 10 else "")
        )
    try:
        pool = _comparison_pool(document, live, exam_code, with_calibration)
    except PoolError as exc:
        pool = None
        problems.append(f"items: {exc}")
    problems += validate_bundle(document, pool, require_validation=require_validation)
    if problems:
        checks = [check for check in CHECKS if any(_classify(p) == check for p in problems)]
        raise BundleRefused(checks, problems)
    return live
