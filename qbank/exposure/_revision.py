"""Bundle revisions: a change of K derived from a bundle, unvalidated until validated.

A manual change of ``sh_p`` or a heuristic re-estimation does not write K anywhere but into a
new bundle document (:func:`derive_revision`): the parent's rules with the new K, a
``revision`` block (parent checksum, kind, author, reason, the changes) and ``validation``
null. :func:`validate_revision` runs the revision's own rules (:func:`qbank.rules_from_bundle`)
on fresh simulees and fills ``validation``; it passes, as a ``qbank sh`` validation does, when
every controlled maximum exposure rate is within :func:`validation_limit` (``r + 3 SE``) and no
test ended short. :func:`base_revision` is the K = 1 document an exam without
any bundle starts from.
"""

from __future__ import annotations

import copy
import datetime as dt

import numpy as np

from qbank.pool import ItemPool
from qbank.rules import FirstItem, estimator_to_dict, rules_from_bundle
from qbank.simulation import simulate

from ._bundle import (
    BUNDLE_SCHEMA,
    BundleError,
    _common_D,
    _finite,
    _pool_from_items,
    _semantic_problems,
    bundle_items,
    bundle_sha256,
)
from ._updates import REPORT_STRATA, validation_limit

__all__ = ["base_revision", "derive_revision", "validate_revision"]

_FIGURE_KEYS = ("max_exposure", "items_never_used", "overlap_rate", "bias", "rmse", "mean_se", "mean_length")


def _checked(document: dict) -> dict:
    # Built here, so its structure is known: the consistency checks suffice (the JSON Schema
    # check is the upload's, and the first use of jsonschema costs seconds of imports).
    problems = _semantic_problems(document, None, 1, require_validation=False)
    if problems:
        raise BundleError(problems)
    return document


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def base_revision(pool: ItemPool, *, r_max: float, stopping, estimator, author: str, reason: str) -> dict:
    """A classic Sympson-Hetter document with ``K = 1`` for every item of ``pool`` and no
    calibration run behind it: what a change starts from when an exam has no bundle yet."""
    from qbank import __version__

    common_D = _common_D(pool.D)
    items = bundle_items(pool, [1.0] * pool.n_items)
    document = {
        "schema": BUNDLE_SCHEMA,
        "created_at": _now(),
        "qbank_version": __version__,
        "pool": {"id": pool.name, "sha256": pool.sha256(), "n_items": pool.n_items},
        "model": pool.model,
        "D": common_D,
        "selector": "sympson_hetter",
        "r_max": float(r_max),
        "test_length": int(stopping.max_length),
        "stopping": stopping.to_dict(),
        "estimator": estimator_to_dict(estimator),
        "first_item": FirstItem().to_dict(),
        "simulation": None,
        "validation": None,
        "strata": None,
        "items": items,
        "revision": {
            "parent_sha256": None,
            "kind": "manual",
            "author": author,
            "reason": reason,
            "changes": [],
        },
    }
    document["bundle_sha256"] = bundle_sha256(document)
    return _checked(document)


def derive_revision(parent: dict, sh_p: dict, *, kind: str, author: str, reason: str) -> dict:
    """A new revision of ``parent`` with ``sh_p`` ({item_id: K, or one K per stratum}) changed.

    Raises
    ------
    ValueError
        Naming item ids the parent does not hold, or values outside [0, 1] / of the wrong shape.
    """
    document = copy.deepcopy(parent)
    conditional = parent["selector"] == "conditional_sympson_hetter"
    n_strata = len(parent["strata"]["theta_cuts"]) + 1 if conditional else None
    by_id = {item["item_id"]: item for item in document["items"]}
    unknown = sorted(set(sh_p) - set(by_id))
    if unknown:
        raise ValueError(f"sh_p: item(s) not in the bundle: {unknown[:10]}")
    changes = []
    for item_id, value in sh_p.items():
        item = by_id[item_id]
        if conditional and not isinstance(value, list):
            value = [float(value)] * n_strata
        values = np.atleast_1d(np.asarray(value, dtype=float))
        if np.any(~np.isfinite(values)) or np.any((values < 0) | (values > 1)):
            raise ValueError(f"sh_p: {item_id}: must be in [0, 1], got {value!r}")
        if conditional and values.size != n_strata:
            raise ValueError(f"sh_p: {item_id}: needs {n_strata} values (one per stratum), got {value!r}")
        new = values.tolist() if conditional else float(values[0])
        if new != item["sh_p"]:
            changes.append({"item_id": item_id, "sh_p_old": item["sh_p"], "sh_p_new": new})
            item["sh_p"] = new
    document.pop("bundle_sha256", None)
    document.update(
        created_at=_now(),
        validation=None,
        revision={
            "parent_sha256": parent["bundle_sha256"],
            "kind": kind,
            "author": author,
            "reason": reason,
            "changes": changes,
        },
    )
    document["bundle_sha256"] = bundle_sha256(document)
    return _checked(document)


def validate_revision(document: dict, *, n_examinees: int, seed: int, progress=None) -> dict:
    """The revision with ``validation`` filled from a fresh simulation of its own rules.

    Simulees come from the calibration's theta distribution (N(0, 1) without one); exposure is
    tallied per true theta stratum (the bundle's strata when conditional, else overall).
    ``progress(done, total)`` is called after each chunk. The result's ``validation.passed``
    says whether it may be promoted without force.
    """
    pool = _pool_from_items(document)
    rules = rules_from_bundle(document, pool)
    simulation = document["simulation"]
    distribution = (
        simulation["theta_distribution"] if simulation else {"name": "normal", "params": [0.0, 1.0]}
    )
    conditional = rules.strata_cuts is not None
    cuts = rules.strata_cuts if conditional else np.asarray(REPORT_STRATA)
    kwargs = rules.simulation_kwargs()
    kwargs["strata_cuts"] = cuts
    result = simulate(
        pool,
        n_examinees=n_examinees,
        theta_distribution=distribution["name"],
        theta_params=tuple(distribution["params"]),
        rng=seed,
        keep_examinees=False,
        progress=progress,
        **kwargs,
    )
    r_max = float(document["r_max"])
    if conditional:
        exposure = np.nan_to_num(result.stratum_rates()[1])
        n_val = result.stratum_examinee_count
    else:
        exposure = result.exposure_rate[:, None]
        n_val = np.array([result.n_examinees])
    tolerance = np.atleast_1d(validation_limit(r_max, n_val) - r_max)
    maxima = exposure.max(axis=0)
    short = int(result.pool_exhausted)
    summary = result.summary
    figures = {k: int(summary[k]) if k == "items_never_used" else float(summary[k]) for k in _FIGURE_KEYS}
    validated = copy.deepcopy(document)
    validated.pop("bundle_sha256", None)
    validated["validation"] = {
        "n_examinees": int(n_examinees),
        "seed": int(seed),
        "controlled_max_exposure": [float(x) for x in maxima],
        "tolerance": [float(x) for x in tolerance],
        **figures,
        "items_over_r_max": int(summary["items_over_target"]),
        "tests_ended_short": short,
        "converged": True,
        "passed": bool(np.all(maxima <= r_max + tolerance + 1e-12) and short == 0),
        "uncontrolled": None,
        "conditional": [
            {
                "theta_low": _finite(row.theta_low),
                "theta_high": _finite(row.theta_high),
                "n": int(row.n),
                "bias": float(row.bias),
                "rmse": float(row.rmse),
                "mean_se": float(row.mean_se),
            }
            for row in result.conditional.itertuples()
        ],
    }
    validated["bundle_sha256"] = bundle_sha256(validated)
    return _checked(validated)
