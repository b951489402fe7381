"""The exposure bundle: a validated calibration as one checksummed JSON document.

The workbench writes it (:func:`build_bundle`, :func:`write_bundle`); the delivery service
accepts or refuses it with the same :func:`validate_bundle`. Structure is a JSON Schema
(:data:`BUNDLE_JSON_SCHEMA`, draft 2020-12, checked with ``jsonschema``); what a schema cannot
say (consistency between fields, checksums, validation within tolerance, agreement with a live
pool) is checked in Python. Every problem names its field, e.g. ``items[3].sh_p: ...``.

The schema itself, field by field, is in :mod:`qbank.exposure._bundle_schema`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from qbank.polytomous import DICHOTOMOUS, MODEL_NAMES
from qbank.pool import ItemPool, PoolError
from qbank.rules import FirstItem, estimator_from_dict, estimator_to_dict

from ._bundle_schema import _FIGURES, BUNDLE_JSON_SCHEMA, BUNDLE_SCHEMA, _schema_problems
from ._calibrate import ExposureCalibration
from ._validate import ExposureValidation

__all__ = [
    "BUNDLE_JSON_SCHEMA",
    "BUNDLE_SCHEMA",
    "BundleError",
    "build_bundle",
    "bundle_sha256",
    "check_bundle",
    "read_bundle",
    "validate_bundle",
    "write_bundle",
]


class BundleError(ValueError):
    """A bundle that must be refused; ``problems`` lists every failed check (field: message)."""

    def __init__(self, problems):
        self.problems = list(problems)
        shown = "; ".join(self.problems[:10])
        more = f"; and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
        super().__init__(f"exposure bundle refused ({len(self.problems)} problem(s)): {shown}{more}")


# ---------------------------------------------------------------------------- helpers
def _nonfinite_problems(value, path: str) -> list[str]:
    """Where the document holds NaN or an infinity (Python's JSON reader accepts NaN, Infinity
    and 1e999); JSON Schema calls them numbers, and no calculation or checksum can use them."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path or '(document)'}: must be a finite number, not {value}"]
    if isinstance(value, dict):
        return [
            p for k, v in value.items() for p in _nonfinite_problems(v, f"{path}.{k}" if path else str(k))
        ]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nonfinite_problems(v, f"{path}[{i}]")]
    return []


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def bundle_sha256(bundle: dict) -> str:
    """sha256 of the canonical JSON of ``bundle`` without its ``bundle_sha256`` key."""
    body = {k: v for k, v in bundle.items() if k != "bundle_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _common_D(D: np.ndarray) -> float:
    values, counts = np.unique(D, return_counts=True)
    return float(values[np.argmax(counts)])


def bundle_items(pool: ItemPool, sh_p: list) -> list[dict]:
    """The bundle's ``items``: each item's parameters (``D`` only where it differs from the pool's
    common one; a GRM/GPCM item adds ``model`` and its ``thresholds``) and its ``sh_p`` (a number,
    or one per stratum)."""
    common_D = _common_D(pool.D)
    codes = pool.model_codes
    items = []
    for i in range(pool.n_items):
        item = {
            "item_id": str(pool.item_id[i]),
            "a": float(pool.a[i]),
            "b": float(pool.b[i]),
            "c": float(pool.c[i]),
        }
        if pool.D[i] != common_D:
            item["D"] = float(pool.D[i])
        if codes[i] != DICHOTOMOUS:
            steps = pool.thresholds[i]
            item["model"] = MODEL_NAMES[codes[i]]
            item["thresholds"] = [float(t) for t in steps[~np.isnan(steps)]]
        item["sh_p"] = sh_p[i]
        items.append(item)
    return items


def _pool_from_items(bundle: dict) -> ItemPool:
    items = bundle["items"]
    frame = pd.DataFrame(
        {
            "item_id": [item["item_id"] for item in items],
            "a": [item["a"] for item in items],
            "b": [item["b"] for item in items],
            "c": [item["c"] for item in items],
            "D": [item.get("D", bundle["D"]) for item in items],
        }
    )
    if any("model" in item for item in items):  # category parameters, as a pool file gives them
        frame["model"] = [item.get("model", "") for item in items]
        width = max(len(item.get("thresholds", ())) for item in items)
        for k in range(width):
            frame[f"b{k + 1}"] = [
                item["thresholds"][k] if k < len(item.get("thresholds", ())) else np.nan for item in items
            ]
    return ItemPool.from_frame(frame, name=bundle["pool"]["id"], source="items")


# ---------------------------------------------------------------------------- semantic checks
def _run_problems(bundle, simulation, validation, n_controlled, min_validation_examinees) -> list[str]:
    """Checks of the calibration run and of the validation run, where the bundle has them."""
    problems = []
    if simulation is not None:
        if simulation["iterations"] != len(simulation["trace"]):
            problems.append(
                f"simulation.trace: {len(simulation['trace'])} entries for {simulation['iterations']} iterations"
            )
        if simulation["iterations"] > simulation["max_iterations"]:
            problems.append("simulation.iterations: exceeds max_iterations")
        for position, entry in enumerate(simulation["trace"]):
            if entry["iteration"] != position + 1:
                problems.append(f"simulation.trace[{position}].iteration: expected {position + 1}")
            for key in ("max_exposure", "tolerance", "k_shift", "n_capped"):
                if len(entry[key]) != n_controlled:
                    problems.append(f"simulation.trace[{position}].{key}: needs {n_controlled} value(s)")
        for key in ("monte_carlo_se", "tolerance"):
            if len(simulation[key]) != n_controlled:
                problems.append(f"simulation.{key}: needs {n_controlled} value(s)")

    if (simulation is not None and not simulation["converged"]) or (
        validation is not None and not validation["converged"]
    ):
        problems.append(
            "simulation.converged: the calibration did not converge; such a result is not a bundle"
        )
    if validation is None:
        return problems
    if not validation["passed"]:
        problems.append("validation.passed: the validation did not pass")
    if validation["n_examinees"] < min_validation_examinees:
        problems.append(
            f"validation.n_examinees: {validation['n_examinees']} simulees; at least "
            f"{min_validation_examinees} required"
        )
    if simulation is not None and validation["seed"] is not None and validation["seed"] == simulation["seed"]:
        problems.append(
            f"validation.seed: {validation['seed']} is the calibration's seed; validation needs "
            "fresh simulees"
        )
    if validation["tests_ended_short"]:
        problems.append(
            f"validation.tests_ended_short: {validation['tests_ended_short']} test(s) ended "
            "because exposure control left no item"
        )
    maxima, tolerance = validation["controlled_max_exposure"], validation["tolerance"]
    if len(maxima) != n_controlled or len(tolerance) != n_controlled:
        problems.append(f"validation.controlled_max_exposure/tolerance: need {n_controlled} value(s) each")
    else:
        for j, (value, tol) in enumerate(zip(maxima, tolerance)):
            if value > bundle["r_max"] + tol + 1e-12:
                problems.append(
                    f"validation.controlled_max_exposure[{j}]: {value:.4f} exceeds r_max + tolerance "
                    f"= {bundle['r_max'] + tol:.4f}"
                )
    return problems


def _semantic_problems(
    bundle: dict, pool: ItemPool | None, min_validation_examinees: int, require_validation: bool = True
) -> list[str]:
    problems = []
    conditional = bundle["selector"] == "conditional_sympson_hetter"
    strata = bundle["strata"]
    n_controlled = 1
    if conditional:
        if strata is None:
            problems.append("strata: conditional_sympson_hetter needs strata.theta_cuts")
        else:
            cuts = np.asarray(strata["theta_cuts"], dtype=float)
            if np.any(np.diff(cuts) <= 0):
                problems.append(f"strata.theta_cuts: must be strictly increasing, got {cuts.tolist()}")
            n_controlled = cuts.size + 1
    elif strata is not None:
        problems.append("strata: must be null for selector sympson_hetter")

    items = bundle["items"]
    if len(items) != bundle["pool"]["n_items"]:
        problems.append(f"items: {len(items)} items but pool.n_items is {bundle['pool']['n_items']}")
    seen = set()
    for position, item in enumerate(items):
        if item["item_id"] in seen:
            problems.append(f"items[{position}].item_id: duplicate {item['item_id']!r}")
        seen.add(item["item_id"])
        sh_p = item["sh_p"]
        if conditional and (not isinstance(sh_p, list) or len(sh_p) != n_controlled):
            problems.append(
                f"items[{position}].sh_p: conditional_sympson_hetter needs a list of {n_controlled} "
                f"values (one per stratum), got {sh_p!r}"
            )
        if not conditional and isinstance(sh_p, list):
            problems.append(f"items[{position}].sh_p: sympson_hetter needs one number, got a list")

    try:
        estimator_from_dict(bundle["estimator"])
    except ValueError as exc:
        problems.append(f"estimator: {str(exc).removeprefix('estimator: ')}")
    stopping = bundle["stopping"]
    length = stopping["length"] if stopping["rule"] == "fixed_length" else stopping["max_length"]
    if length != bundle["test_length"]:
        problems.append(f"test_length: {bundle['test_length']} disagrees with the stopping rule's {length}")
    if stopping["rule"] == "standard_error" and stopping["min_length"] > stopping["max_length"]:
        problems.append("stopping: min_length exceeds max_length")
    if bundle["r_max"] * len(items) < (stopping.get("min_length") or stopping.get("length")) - 1e-9:
        problems.append(
            f"r_max: {bundle['r_max']} cannot be met with {len(items)} items and tests of "
            f"{stopping.get('min_length') or stopping.get('length')} items"
        )

    try:
        created = dt.datetime.fromisoformat(bundle["created_at"])
        if created.tzinfo is None:
            problems.append("created_at: needs a time zone (e.g. ...Z or +00:00)")
    except ValueError:
        problems.append(f"created_at: not an ISO 8601 date-time: {bundle['created_at']!r}")

    simulation, validation = bundle["simulation"], bundle["validation"]
    if simulation is None and bundle.get("revision") is None:
        problems.append("simulation: only a revision (with revision.parent_sha256 null) may lack one")
    if validation is None and require_validation:
        problems.append("validation: none: an unvalidated revision (run a validation before promoting it)")
    problems.extend(_run_problems(bundle, simulation, validation, n_controlled, min_validation_examinees))

    try:
        items_pool = _pool_from_items(bundle)
    except PoolError as exc:
        problems.append(f"items: {exc}")
        items_pool = None
    if items_pool is not None:
        if items_pool.sha256() != bundle["pool"]["sha256"]:
            problems.append("pool.sha256: does not match the item parameters in items (altered parameters?)")
        if items_pool.model != bundle["model"]:
            problems.append(f"model: {bundle['model']} but the items are {items_pool.model}")
    if pool is not None and items_pool is not None:
        problems.extend(_pool_mismatch(items_pool, pool))

    if bundle["bundle_sha256"] != bundle_sha256(bundle):
        problems.append("bundle_sha256: does not match the document (edited after it was written?)")
    return problems


def _threshold_differences(first: ItemPool, rows, second: ItemPool, other_rows) -> np.ndarray:
    """Items whose category thresholds differ (in number or by more than 1e-9)."""
    ours, theirs = first.threshold_table[rows], second.threshold_table[other_rows]
    width = max(ours.shape[1], theirs.shape[1])
    ours, theirs = (
        np.pad(t, ((0, 0), (0, width - t.shape[1])), constant_values=np.nan) for t in (ours, theirs)
    )
    same = (np.isnan(ours) & np.isnan(theirs)) | (np.abs(ours - theirs) <= 1e-9)
    return ~same.all(axis=1)


def _pool_mismatch(items_pool: ItemPool, pool: ItemPool) -> list[str]:
    if items_pool.sha256() == pool.sha256():
        return []
    problems = []
    missing = sorted(set(pool.item_id) - set(items_pool.item_id))
    extra = sorted(set(items_pool.item_id) - set(pool.item_id))
    if missing:
        problems.append(f"items: no entry for pool item(s) {missing[:10]}")
    if extra:
        problems.append(f"items: item(s) not in the pool {extra[:10]}")
    common = [i for i in items_pool.item_id if i in set(pool.item_id)]
    if common:
        ours, theirs = items_pool.index_of(common), pool.index_of(common)
        differs = np.zeros(len(common), dtype=bool)
        for name in ("a", "b", "c", "D"):
            differs |= np.abs(getattr(items_pool, name)[ours] - getattr(pool, name)[theirs]) > 1e-9
        differs |= items_pool.model_codes[ours] != pool.model_codes[theirs]
        differs |= _threshold_differences(items_pool, ours, pool, theirs)
        if differs.any():
            bad = [common[i] for i in np.flatnonzero(differs)]
            problems.append(
                f"items: parameters differ from the pool's calibration for {bad[:10]}"
                + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            )
        elif not missing and not extra:
            problems.append("items: the items are in another order than the pool's")
    return problems


# ---------------------------------------------------------------------------- public functions
def validate_bundle(
    bundle,
    pool: ItemPool | None = None,
    *,
    min_validation_examinees: int = 1,
    require_validation: bool = True,
) -> list[str]:
    """Every reason to refuse ``bundle``; an empty list means it is acceptable.

    Checks the JSON Schema :data:`BUNDLE_JSON_SCHEMA`, then: selector and strata agree, one
    ``sh_p`` per stratum, unique item ids, stopping and test length agree, ``pool.sha256``
    matches the item parameters, the calibration converged, the validation passed on fresh
    simulees with every controlled maximum exposure within ``r_max + tolerance`` and no test
    ended short, and ``bundle_sha256`` matches. With ``pool``, the items must be exactly the
    pool's (ids, order and parameters; differing items are named).

    Parameters
    ----------
    bundle : dict
        The parsed JSON document.
    pool : ItemPool, optional
        Live calibration the bundle must agree with.
    min_validation_examinees : int
        Policy minimum of validation simulees.
    require_validation : bool
        Refuse an unvalidated revision (``validation`` null); off to store one.

    Returns
    -------
    list of str
        ``"field.path: message"`` per problem.
    """
    if not isinstance(bundle, dict):
        return [f"(document): must be a JSON object, got {type(bundle).__name__}"]
    problems = _nonfinite_problems(bundle, "")
    if problems:
        return problems
    problems = _schema_problems(bundle)
    if problems:
        return problems
    return _semantic_problems(bundle, pool, min_validation_examinees, require_validation)


def check_bundle(
    bundle,
    pool: ItemPool | None = None,
    *,
    min_validation_examinees: int = 1,
    require_validation: bool = True,
) -> dict:
    """:func:`validate_bundle`, raising :class:`BundleError` with every problem; returns ``bundle``."""
    problems = validate_bundle(
        bundle, pool, min_validation_examinees=min_validation_examinees, require_validation=require_validation
    )
    if problems:
        raise BundleError(problems)
    return bundle


def build_bundle(
    calibration: ExposureCalibration, validation: ExposureValidation, *, created_at=None
) -> dict:
    """The bundle of a converged, validated calibration.

    Raises
    ------
    BundleError
        When the calibration did not converge or the validation did not pass: only a
        validated result becomes a bundle.
    """
    if not validation.passed:
        raise BundleError([f"validation: {problem}" for problem in validation.problems])
    from qbank import __version__

    pool = calibration.pool
    common_D = _common_D(pool.D)
    sh_p = [k.tolist() if calibration.conditional else float(k) for k in calibration.sh_p]
    items = bundle_items(pool, sh_p)
    stopping = calibration.stopping.to_dict()
    trace = []
    for iteration, rows in calibration.trace.groupby("iteration", sort=True):
        trace.append(
            {
                "iteration": int(iteration),
                "max_exposure": rows["max_exposure"].tolist(),
                "tolerance": rows["tolerance"].tolist(),
                "k_shift": rows["k_shift"].tolist(),
                "n_capped": [int(x) for x in rows["n_capped"]],
                "rmse": float(rows["rmse"].iloc[0]),
                "tests_ended_short": int(rows["tests_ended_short"].iloc[0]),
                "wall_seconds": float(rows["wall_seconds"].iloc[0]),
            }
        )
    settings = calibration.settings
    controlled = validation.controlled

    def figures(result):
        summary = result.summary
        return {k: float(summary[k]) if k != "items_never_used" else int(summary[k]) for k in _FIGURES}

    conditional_rows = [
        {
            "theta_low": _finite(row.theta_low),
            "theta_high": _finite(row.theta_high),
            "n": int(row.n),
            "bias": float(row.bias),
            "rmse": float(row.rmse),
            "mean_se": float(row.mean_se),
        }
        for row in controlled.conditional.itertuples()
    ]
    bundle = {
        "schema": BUNDLE_SCHEMA,
        "created_at": (created_at or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "qbank_version": __version__,
        "pool": {"id": pool.name, "sha256": pool.sha256(), "n_items": pool.n_items},
        "model": pool.model,
        "D": common_D,
        "selector": calibration.selector.rule,
        "r_max": calibration.r_max,
        "test_length": int(calibration.stopping.max_length),
        "stopping": stopping,
        "estimator": estimator_to_dict(calibration.estimator),
        "first_item": FirstItem().to_dict(),
        "simulation": {
            "method": calibration.method,
            "n_examinees": settings["n_examinees"],
            "iterations": calibration.n_iterations,
            "max_iterations": settings["max_iter"],
            "window": settings["window"],
            "seed": settings["seed"],
            "theta_distribution": {
                "name": settings["theta_distribution"],
                "params": settings["theta_params"],
            },
            "tolerance_source": settings["tolerance_source"],
            "confidence": settings["confidence"],
            "monte_carlo_se": [float(x) for x in calibration.monte_carlo_se],
            "tolerance": [float(x) for x in calibration.tolerance],
            "converged": calibration.converged,
            "wall_seconds": float(calibration.wall_seconds),
            "trace": trace,
        },
        "validation": {
            "n_examinees": validation.n_examinees,
            "seed": validation.seed,
            "controlled_max_exposure": [float(x) for x in validation.max_exposure],
            "tolerance": [float(x) for x in validation.tolerance],
            **figures(controlled),
            "items_over_r_max": int(controlled.summary["items_over_target"]),
            "tests_ended_short": int(validation.tests_ended_short),
            "converged": validation.converged,
            "passed": validation.passed,
            "uncontrolled": None if validation.uncontrolled is None else figures(validation.uncontrolled),
            "conditional": conditional_rows,
        },
        "strata": {"theta_cuts": calibration.strata_cuts.tolist()} if calibration.conditional else None,
        "items": items,
    }
    bundle["bundle_sha256"] = bundle_sha256(bundle)
    return check_bundle(bundle, pool)


def write_bundle(bundle: dict, path) -> Path:
    """Check and write a bundle as JSON (refuses to write one that :func:`validate_bundle` rejects)."""
    check_bundle(bundle)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bundle, indent=1, allow_nan=False) + "\n")
    return path


def read_bundle(path, pool: ItemPool | None = None, *, min_validation_examinees: int = 1) -> dict:
    """Read and check a bundle file.

    Raises
    ------
    BundleError
        Unreadable file, invalid JSON (with line and column) or any failed check.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(
            [f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
        ) from None
    return check_bundle(bundle, pool, min_validation_examinees=min_validation_examinees)
