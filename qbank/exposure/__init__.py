"""Exposure control: iterative Sympson-Hetter (classic and conditional) and item eligibility,
validated on fresh simulees and written as an exposure bundle for the delivery service.

Typical use (what ``qbank sh`` does)::

    calibration = calibrate_exposure(pool, 0.25, stopping=FixedLength(30), rng=0)
    validation = validate_exposure(calibration, n_examinees=50_000, rng=1)
    if validation.passed:
        write_bundle(build_bundle(calibration, validation), "out/bundle.json")
    write_report("out", calibration, validation)
"""

from ._bundle import (
    BUNDLE_JSON_SCHEMA,
    BUNDLE_SCHEMA,
    BundleError,
    build_bundle,
    bundle_sha256,
    check_bundle,
    read_bundle,
    validate_bundle,
    write_bundle,
)
from ._calibrate import ExposureCalibration, calibrate_exposure
from ._report import write_report
from ._revision import base_revision, derive_revision, validate_revision
from ._updates import (
    METHODS,
    ExposureTargetError,
    check_exposure_target,
    eligibility_update,
    monte_carlo_se,
    noise_tolerance,
    stratum_labels,
    sympson_hetter_update,
    target_margin,
    validation_limit,
)
from ._validate import ExposureValidation, comparison_table, validate_exposure

__all__ = [
    "BUNDLE_JSON_SCHEMA",
    "BUNDLE_SCHEMA",
    "METHODS",
    "BundleError",
    "ExposureCalibration",
    "ExposureTargetError",
    "ExposureValidation",
    "base_revision",
    "build_bundle",
    "bundle_sha256",
    "calibrate_exposure",
    "check_bundle",
    "check_exposure_target",
    "comparison_table",
    "derive_revision",
    "eligibility_update",
    "monte_carlo_se",
    "noise_tolerance",
    "read_bundle",
    "stratum_labels",
    "sympson_hetter_update",
    "target_margin",
    "validate_bundle",
    "validate_exposure",
    "validate_revision",
    "validation_limit",
    "write_bundle",
    "write_report",
]
