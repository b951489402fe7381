"""Exposure administration of the delivery service: what the workbench validated is what
students get, and what students got feeds back into the workbench. One module per concern:

- :mod:`~service.exposure.rules`: the CAT rules a quiz pins (its bundle revision's, or explicit
  settings) and rebuilds at every step;
- :mod:`~service.exposure.checks`, :mod:`~service.exposure.bundles`,
  :mod:`~service.exposure.promotion`: bundle revisions uploaded, checked against the live
  calibration, listed, promoted (atomic, audited) and rolled back;
- :mod:`~service.exposure.revisions`, :mod:`~service.exposure.validation`: every change of K
  (manual, or the scaffold's heuristic) is a new unvalidated revision; a background validation
  run stages it;
- :mod:`~service.exposure.flags`: the selector flag, weighted variants and sticky cohorts;
- :mod:`~service.exposure.items`, :mod:`~service.exposure.daily_cap`: K in force per item with
  recent exposure, and the atomic daily cap;
- :mod:`~service.exposure.reports`: the A/B report, drift against the bundle's prediction, the
  audit trail;
- :mod:`~service.exposure.reestimate`: the nightly recalibration and re-run of Sympson-Hetter;
- :mod:`~service.exposure.audit`: replay of a served quiz in the core.
"""

from service.exposure.audit import audit_quiz
from service.exposure.bundles import BUNDLE_STATUSES, bundle_detail, list_bundles, upload_bundle
from service.exposure.checks import CHECKS, BundleRefused, check_against_live
from service.exposure.daily_cap import capped_today, claim_daily_exposure, daily_exposures
from service.exposure.flags import (
    EXPOSURE_RULES,
    SELECTOR_ALIASES,
    SELECTOR_FLAG,
    SELECTOR_RULES,
    assign_variant,
    check_flag,
    choose_selector,
    cohort_sizes,
    list_flags,
    rule_of,
    set_flag,
)
from service.exposure.items import exposure_items
from service.exposure.promotion import promote_bundle, rollback_bundle
from service.exposure.reestimate import (
    ReestimateError,
    observed_population,
    recent_responses,
    stage_reestimated_bundle,
)
from service.exposure.reports import ab_report, audit_trail, exposure_drift, predicted_rates
from service.exposure.revisions import create_revision, parent_revision, reestimate_heuristic, set_override
from service.exposure.rules import active_bundle, describe, pin_rules, quiz_rules
from service.exposure.validation import run_validation, start_validation

__all__ = [
    "BUNDLE_STATUSES",
    "CHECKS",
    "EXPOSURE_RULES",
    "SELECTOR_ALIASES",
    "SELECTOR_FLAG",
    "SELECTOR_RULES",
    "BundleRefused",
    "ReestimateError",
    "ab_report",
    "active_bundle",
    "assign_variant",
    "audit_quiz",
    "audit_trail",
    "bundle_detail",
    "capped_today",
    "check_against_live",
    "check_flag",
    "choose_selector",
    "claim_daily_exposure",
    "cohort_sizes",
    "create_revision",
    "daily_exposures",
    "describe",
    "exposure_drift",
    "exposure_items",
    "list_bundles",
    "list_flags",
    "observed_population",
    "parent_revision",
    "pin_rules",
    "predicted_rates",
    "promote_bundle",
    "quiz_rules",
    "recent_responses",
    "reestimate_heuristic",
    "rollback_bundle",
    "rule_of",
    "run_validation",
    "set_flag",
    "set_override",
    "stage_reestimated_bundle",
    "start_validation",
    "upload_bundle",
]
