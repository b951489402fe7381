"""The selector flag and cohorts: which selection rule a user's new adaptive quiz runs.

``selector_strategy`` is ``{"value": rule}`` for everyone, or weighted variants
``{"variants": {"vanilla": 1, "sympson_hetter": 1}, "experiment": "sh-rollout"}``; a user's
variant comes from a hash of experiment key and user id (:func:`assign_variant`) and is stored on
first use in ``cohort_assignments`` (``cohort_key`` = the experiment key), so it never changes
for that experiment."""

from __future__ import annotations

import hashlib
import math

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qbank.selection import RULES
from service.errors import Invalid
from service.events import audit
from service.models import (
    CohortAssignment,
    FeatureFlag,
    utcnow,
)

SELECTOR_FLAG = "selector_strategy"
SELECTOR_ALIASES = {"vanilla": "max_info"}
SELECTOR_RULES = RULES
EXPOSURE_RULES = ("sympson_hetter", "conditional_sympson_hetter")


# ---------------------------------------------------------------------------- flags and cohorts
def rule_of(value, field: str) -> str:
    rule = SELECTOR_ALIASES.get(value, value)
    if rule not in SELECTOR_RULES:
        allowed = sorted(set(SELECTOR_RULES) | set(SELECTOR_ALIASES))
        raise Invalid(f"{field}: {value!r} is not a selection rule; choose from {allowed}")
    return rule


def check_flag(key: str, value_json: dict) -> None:
    """Validate a flag's value; ``selector_strategy`` takes ``value`` (a rule), ``variants``
    ({rule: weight >= 0}, weights summing to more than 0), ``experiment`` (the cohort key),
    ``k`` (randomesque) and ``n_strata`` (a-stratified).

    Raises
    ------
    Invalid
        Naming the field.
    """
    if key != SELECTOR_FLAG:
        return
    if "value" in value_json:
        rule_of(value_json["value"], "value_json.value")
    if "variants" in value_json:
        variants = value_json["variants"]
        if not isinstance(variants, dict) or not variants:
            raise Invalid(
                'value_json.variants: must be an object {rule: weight}, e.g. {"vanilla": 1, '
                '"sympson_hetter": 1}'
            )
        for name, weight in variants.items():
            rule_of(name, f"value_json.variants.{name}")
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float))
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise Invalid(f"value_json.variants.{name}: weight must be a number >= 0, got {weight!r}")
        if sum(variants.values()) <= 0:
            raise Invalid("value_json.variants: the weights must not all be 0")
    if "experiment" in value_json:
        experiment = value_json["experiment"]
        if not isinstance(experiment, str) or not 1 <= len(experiment) <= 128:
            raise Invalid(f"value_json.experiment: must be a text of 1 to 128 characters, got {experiment!r}")
    for name, low in (("k", 1), ("n_strata", 1)):
        if name in value_json and (not isinstance(value_json[name], int) or value_json[name] < low):
            raise Invalid(f"value_json.{name}: must be an integer >= {low}, got {value_json[name]!r}")


def set_flag(session: Session, tenant_id: str, actor: str, key: str, enabled: bool, value_json: dict) -> dict:
    """Set a feature flag (validated by :func:`check_flag`); audited; commits."""
    check_flag(key, value_json)
    flag = session.get(FeatureFlag, (tenant_id, key))
    if flag is None:
        session.add(FeatureFlag(tenant_id=tenant_id, key=key, enabled=enabled, value_json=value_json))
    else:
        flag.enabled, flag.value_json = enabled, value_json
    audit(
        session,
        tenant_id,
        actor,
        "flag.set",
        "feature_flag",
        key,
        {"enabled": enabled, "value_json": value_json},
    )
    session.commit()
    return {"key": key, "enabled": enabled, "value_json": value_json}


def list_flags(session: Session, tenant_id: str) -> list[dict]:
    """``[{key, enabled, value_json, updated_at}]`` of the tenant, by key."""
    flags = session.scalars(
        select(FeatureFlag).where(FeatureFlag.tenant_id == tenant_id).order_by(FeatureFlag.key)
    ).all()
    session.commit()
    return [
        {"key": f.key, "enabled": f.enabled, "value_json": f.value_json, "updated_at": f.updated_at}
        for f in flags
    ]


def assign_variant(experiment: str, user_id: str, weights: dict) -> str:
    """The variant of ``weights`` a user falls in, from a hash of experiment key and user id.

    ``u`` = the first 8 bytes of ``sha256(experiment + "\\x1f" + user_id)`` as an unsigned
    integer over 2**64, uniform on [0, 1); variants in name order take consecutive shares of
    [0, 1) proportional to their weights. The same inputs give the same variant on any
    instance; another experiment key reshuffles users independently.
    """
    digest = hashlib.sha256(f"{experiment}\x1f{user_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    names = sorted(name for name, weight in weights.items() if weight > 0)
    shares = np.cumsum([float(weights[name]) for name in names])
    return names[min(int(np.searchsorted(shares / shares[-1], u, side="right")), len(names) - 1)]


def _sticky_variant(session: Session, tenant_id: str, user_id: str, experiment: str, variants: dict) -> str:
    row = session.get(CohortAssignment, (tenant_id, user_id, experiment))
    if row is not None:
        return row.cohort_value
    value = assign_variant(experiment, user_id, variants)
    try:
        with session.begin_nested():
            session.add(
                CohortAssignment(
                    tenant_id=tenant_id,
                    user_id=user_id,
                    cohort_key=experiment,
                    cohort_value=value,
                    assigned_at=utcnow(),
                )
            )
    except IntegrityError:  # the same user's other request assigned it first
        value = session.get(
            CohortAssignment, (tenant_id, user_id, experiment), populate_existing=True
        ).cohort_value
    return value


def choose_selector(session: Session, tenant_id: str, user_id: str) -> dict:
    """The selection rule of a user's new adaptive quiz (no commit; may add a cohort row).

    With ``variants`` in the enabled ``selector_strategy`` flag, the user's sticky variant of
    its experiment (``experiment``, default ``selector_strategy``); otherwise the user's
    ``selector_strategy`` cohort, else the flag's ``value``, else ``max_info``.

    Returns
    -------
    dict
        ``rule``, ``source`` (cohort | flag | default | fallback from ...), ``cohort`` (the
        variant or cohort value) and ``experiment`` when a cohort decided, ``k`` / ``n_strata``
        for randomesque / a-stratified.
    """
    flag = session.get(FeatureFlag, (tenant_id, SELECTOR_FLAG))
    options = dict(flag.value_json or {}) if flag is not None and flag.enabled else {}
    config: dict = {}
    if options.get("variants"):
        experiment = options.get("experiment") or SELECTOR_FLAG
        value = _sticky_variant(session, tenant_id, user_id, experiment, options["variants"])
        source = "cohort"
        config.update(cohort=value, experiment=experiment)
    else:
        cohort = session.get(CohortAssignment, (tenant_id, user_id, SELECTOR_FLAG))
        if cohort is not None:
            value, source = cohort.cohort_value, "cohort"
            config.update(cohort=value, experiment=SELECTOR_FLAG)
        elif options.get("value"):
            value, source = options["value"], "flag"
        else:
            value, source = "max_info", "default"
    rule = SELECTOR_ALIASES.get(value, value)
    if rule not in SELECTOR_RULES:
        rule, source = "max_info", f"fallback from unknown {value!r}"
    config = {"rule": rule, "source": source, **config}
    if rule == "randomesque":
        config["k"] = int(options.get("k", 5))
    if rule == "a_stratified":
        config["n_strata"] = int(options.get("n_strata", 4))
    return config


def cohort_sizes(session: Session, tenant_id: str, cohort_key: str = SELECTOR_FLAG) -> dict:
    """How many users each cohort of ``cohort_key`` holds.

    Returns
    -------
    dict
        ``cohort_key, total, sizes {value: users}, shares {value: share}`` and ``weights``
        (the flag's normalised variant weights when its experiment is ``cohort_key``, else null).
    """
    rows = session.execute(
        select(CohortAssignment.cohort_value, func.count())
        .where(CohortAssignment.tenant_id == tenant_id, CohortAssignment.cohort_key == cohort_key)
        .group_by(CohortAssignment.cohort_value)
        .order_by(CohortAssignment.cohort_value)
    ).all()
    flag = session.get(FeatureFlag, (tenant_id, SELECTOR_FLAG))
    session.commit()
    sizes = {value: int(n) for value, n in rows}
    total = sum(sizes.values())
    weights = None
    options = flag.value_json if flag is not None and flag.enabled else {}
    if options.get("variants") and (options.get("experiment") or SELECTOR_FLAG) == cohort_key:
        total_weight = float(sum(options["variants"].values()))
        weights = {name: float(w) / total_weight for name, w in sorted(options["variants"].items())}
    return {
        "cohort_key": cohort_key,
        "total": total,
        "sizes": sizes,
        "shares": {k: n / total for k, n in sizes.items()} if total else {},
        "weights": weights,
    }
