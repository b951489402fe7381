"""Validation runs of bundle revisions: :func:`start_validation` marks one running (the caller
runs :func:`run_validation` in the background); the run simulates the revision's own rules on
fresh simulees (:func:`qbank.exposure.validate_revision`), reports its progress in
``exposure_bundle_info`` and stages a revision that passes."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbank.exposure import validate_revision
from service.errors import Conflict, NotFound
from service.events import audit
from service.exposure_models import ExposureBundleInfo
from service.models import ExposureBundle

VALIDATION_EXAMINEES = 20_000


def _info(session: Session, bundle: ExposureBundle) -> ExposureBundleInfo:
    info = session.get(ExposureBundleInfo, bundle.id)
    if info is None:
        info = ExposureBundleInfo(bundle_id=bundle.id, source="upload", carries_calibration=False, note="")
        session.add(info)
    return info


def start_validation(session: Session, tenant_id: str, actor: str, bundle_id: str) -> dict:
    """Mark a revision's validation as running (the caller runs :func:`run_validation` in the
    background); audited; commits. Returns ``{bundle_id, validation_state, validation_progress}``.

    Raises
    ------
    NotFound, Conflict (already validated, or a validation is running)
    """
    bundle = session.scalar(
        select(ExposureBundle).where(ExposureBundle.id == bundle_id, ExposureBundle.tenant_id == tenant_id)
    )
    if bundle is None:
        raise NotFound(f"exposure bundle {bundle_id} not found")
    if bundle.document.get("validation") is not None:
        raise Conflict(f"exposure bundle {bundle_id} is validated already")
    info = _info(session, bundle)
    if info.validation_state == "running":
        raise Conflict(f"a validation of exposure bundle {bundle_id} is running")
    info.validation_state, info.validation_progress, info.validation_message = "running", 0.0, None
    audit(session, tenant_id, actor, "bundle.validate", "exposure_bundle", bundle.id, {})
    session.commit()
    return {"bundle_id": bundle.id, "validation_state": "running", "validation_progress": 0.0}


def run_validation(session_factory, bundle_id: str, n_examinees: int = VALIDATION_EXAMINEES) -> None:
    """Validate a revision (its own rules, fresh simulees: the seed comes from its checksum) and
    store the result: a passing revision becomes ``staged`` with its ``validation`` filled, a
    failing one stays ``unvalidated`` with the reason in ``validation_message``."""
    with session_factory() as session:
        bundle = session.get(ExposureBundle, bundle_id)
        document = bundle.document
        session.commit()

    def progress(done, total):
        with session_factory() as progress_session:
            info = progress_session.get(ExposureBundleInfo, bundle_id)
            info.validation_progress = min(done / total, 0.99)
            progress_session.commit()

    seed = int(hashlib.sha256(document["bundle_sha256"].encode()).hexdigest()[:8], 16)
    try:
        validated = validate_revision(document, n_examinees=n_examinees, seed=seed, progress=progress)
        error = None
    except Exception as exc:  # a failed job must say why instead of staying "running"
        validated, error = None, f"{type(exc).__name__}: {exc}"
    with session_factory() as session:
        bundle = session.get(ExposureBundle, bundle_id)
        info = session.get(ExposureBundleInfo, bundle_id)
        info.validation_progress = 1.0
        if validated is not None and validated["validation"]["passed"]:
            bundle.document, bundle.sha256 = validated, validated["bundle_sha256"]
            if bundle.status == "unvalidated":
                bundle.status = "staged"
            info.validation_state, info.validation_message = "passed", None
            info.predicted_rates = None  # the prediction follows the validated document
        else:
            info.validation_state = "failed"
            info.validation_message = error or (
                f"max exposure {validated['validation']['controlled_max_exposure']} exceeds r_max "
                f"{validated['r_max']} + tolerance {validated['validation']['tolerance']}"
                if validated["validation"]["tests_ended_short"] == 0
                else f"{validated['validation']['tests_ended_short']} test(s) ended short"
            )
        audit(
            session,
            bundle.tenant_id,
            "validation job",
            "bundle.validated",
            "exposure_bundle",
            bundle.id,
            {"state": info.validation_state, "message": info.validation_message},
        )
        session.commit()
