"""The exposure bundle's structure as a JSON Schema (draft 2020-12), checked with ``jsonschema``.

Schema ``qbank.exposure-bundle/1``::

    schema          "qbank.exposure-bundle/1"
    created_at      ISO 8601 date-time with time zone
    qbank_version   version that wrote it
    pool            {id, sha256 (ItemPool.sha256 of the items below), n_items}
    model, D        "1PL" | "2PL" | "3PL" | "GRM" | "GPCM" | "mixed" (ItemPool.model); common scaling
                    constant (an item may override with "D")
    selector        "sympson_hetter" | "conditional_sympson_hetter"
    r_max           target maximum exposure rate, in (0, 1]
    test_length     maximum test length; stopping {rule: fixed_length, length} or
                    {rule: standard_error, se_target, min_length, max_length}
    estimator       {name: eap | map | mle, and the estimator's constructor parameters}, e.g.
                    {name: eap, n_points, grid_min, grid_max, prior_mean, prior_sd}
    first_item      optional (default {rule: prior_mean}): {rule: prior_mean} | {rule: theta, theta}
    simulation      method, n_examinees (per iteration), iterations, max_iterations, window, seed,
                    theta_distribution {name, params}, tolerance_source, confidence,
                    monte_carlo_se[], tolerance[], converged, wall_seconds, trace[] (per iteration:
                    max_exposure[], tolerance[], k_shift[], n_capped[] per controlled stratum,
                    rmse, tests_ended_short, wall_seconds)
    validation      n_examinees, seed (differs from the calibration's), controlled_max_exposure[]
                    and tolerance[] (one per controlled stratum, or one overall), max_exposure,
                    items_over_r_max, items_never_used, tests_ended_short, bias, rmse, mean_se,
                    mean_length, overlap_rate, converged, passed, uncontrolled {same figures
                    without exposure control}, conditional [{theta_low, theta_high, n, bias,
                    rmse, mean_se}] (null = unbounded)
    strata          null, or {theta_cuts: increasing} for conditional_sympson_hetter
    items           [{item_id, a, b, c, [D], [model, thresholds], sh_p}] in pool order; model
                    "GRM" | "GPCM" and thresholds [b1, b2, ...] only for a polytomous item (its b
                    is their mean, c 0); sh_p a number, or one number per stratum when conditional
    bundle_sha256   sha256 of the canonical JSON (sorted keys, no spaces) without this key
"""

from __future__ import annotations

from ._updates import METHODS

BUNDLE_SCHEMA = "qbank.exposure-bundle/1"
SELECTORS = ("sympson_hetter", "conditional_sympson_hetter")

_NUMBER = {"type": "number"}
_RATE = {"type": "number", "minimum": 0, "maximum": 1}
_NON_NEGATIVE = {"type": "number", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
_SEED = {"type": ["integer", "null"]}
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def _object(properties: dict, optional=()) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": [k for k in properties if k not in optional],
    }


def _array(items: dict, min_items: int = 1) -> dict:
    return {"type": "array", "items": items, "minItems": min_items}


_FIGURES = {
    "max_exposure": _RATE,
    "items_never_used": _COUNT,
    "overlap_rate": _RATE,
    "bias": _NUMBER,
    "rmse": _NON_NEGATIVE,
    "mean_se": _NON_NEGATIVE,
    "mean_length": _NON_NEGATIVE,
}
_BOUNDS = {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2}

BUNDLE_JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "qbank exposure bundle, schema qbank.exposure-bundle/1",
    **_object(
        {
            "schema": {"const": BUNDLE_SCHEMA},
            "created_at": {"type": "string", "minLength": 1},
            "qbank_version": {"type": "string"},
            "pool": _object(
                {
                    "id": {"type": "string", "minLength": 1},
                    "sha256": _HEX64,
                    "n_items": {"type": "integer", "minimum": 1},
                }
            ),
            "model": {"enum": ["1PL", "2PL", "3PL", "GRM", "GPCM", "mixed"]},
            "D": {"type": "number", "exclusiveMinimum": 0},
            "selector": {"enum": list(SELECTORS)},
            "r_max": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "test_length": {"type": "integer", "minimum": 1},
            "stopping": {
                "oneOf": [
                    _object({"rule": {"const": "fixed_length"}, "length": {"type": "integer", "minimum": 1}}),
                    _object(
                        {
                            "rule": {"const": "standard_error"},
                            "se_target": {"type": "number", "exclusiveMinimum": 0},
                            "min_length": {"type": "integer", "minimum": 1},
                            "max_length": {"type": "integer", "minimum": 1},
                        }
                    ),
                ]
            },
            # Generic: the estimator's name and its constructor parameters (qbank.rules.estimator_to_dict),
            # so new parameters travel; whether they construct an estimator is checked in Python.
            "estimator": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"enum": ["eap", "map", "mle"]},
                    "n_points": {"type": "integer", "minimum": 2},
                    "grid_min": _NUMBER,
                    "grid_max": _NUMBER,
                    "prior_mean": _NUMBER,
                    "prior_sd": {"type": "number", "exclusiveMinimum": 0},
                    "bounds": _BOUNDS,
                    "n_iter": {"type": "integer", "minimum": 1},
                    "dodd": {"type": "boolean"},
                    "b_range": {"oneOf": [{"type": "null"}, _BOUNDS]},
                    "start": _NUMBER,
                },
            },
            "first_item": {
                "oneOf": [
                    _object({"rule": {"const": "prior_mean"}}),
                    _object({"rule": {"const": "theta"}, "theta": _NUMBER}),
                ]
            },
            "simulation": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "method": {"enum": list(METHODS)},
                            "n_examinees": {"type": "integer", "minimum": 1},
                            "iterations": {"type": "integer", "minimum": 1},
                            "max_iterations": {"type": "integer", "minimum": 1},
                            "window": {"type": "integer", "minimum": 1},
                            "seed": _SEED,
                            "theta_distribution": _object(
                                {"name": {"enum": ["normal", "uniform"]}, "params": {**_BOUNDS}}
                            ),
                            "tolerance_source": {"enum": ["noise", "user"]},
                            "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                            "monte_carlo_se": _array(_NON_NEGATIVE),
                            "tolerance": _array(_NON_NEGATIVE),
                            "converged": {"type": "boolean"},
                            "wall_seconds": _NON_NEGATIVE,
                            "trace": _array(
                                _object(
                                    {
                                        "iteration": {"type": "integer", "minimum": 1},
                                        "max_exposure": _array(_RATE),
                                        "tolerance": _array(_NON_NEGATIVE),
                                        "k_shift": _array(_NON_NEGATIVE),
                                        "n_capped": _array(_COUNT),
                                        "rmse": _NON_NEGATIVE,
                                        "tests_ended_short": _COUNT,
                                        "wall_seconds": _NON_NEGATIVE,
                                    }
                                )
                            ),
                        }
                    ),
                ]
            },
            "validation": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "n_examinees": {"type": "integer", "minimum": 2},
                            "seed": _SEED,
                            "controlled_max_exposure": _array(_RATE),
                            "tolerance": _array(_NON_NEGATIVE),
                            **_FIGURES,
                            "items_over_r_max": _COUNT,
                            "tests_ended_short": _COUNT,
                            "converged": {"type": "boolean"},
                            "passed": {"type": "boolean"},
                            "uncontrolled": {"oneOf": [{"type": "null"}, _object(_FIGURES)]},
                            "conditional": _array(
                                _object(
                                    {
                                        "theta_low": {"type": ["number", "null"]},
                                        "theta_high": {"type": ["number", "null"]},
                                        "n": {"type": "integer", "minimum": 1},
                                        "bias": _NUMBER,
                                        "rmse": _NON_NEGATIVE,
                                        "mean_se": _NON_NEGATIVE,
                                    }
                                )
                            ),
                        }
                    ),
                ]
            },
            "strata": {"oneOf": [{"type": "null"}, _object({"theta_cuts": _array(_NUMBER)})]},
            "items": _array(
                _object(
                    {
                        "item_id": {"type": "string", "minLength": 1},
                        "a": {"type": "number", "exclusiveMinimum": 0},
                        "b": _NUMBER,
                        "c": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                        "D": {"type": "number", "exclusiveMinimum": 0},
                        "model": {"enum": ["GRM", "GPCM"]},
                        "thresholds": _array(_NUMBER),
                        "sh_p": {"oneOf": [_RATE, _array(_RATE, min_items=2)]},
                    },
                    optional=("D", "model", "thresholds"),
                )
            ),
            "revision": _object(
                {
                    "parent_sha256": {"oneOf": [{"type": "null"}, _HEX64]},
                    "kind": {"enum": ["manual", "heuristic"]},
                    "author": {"type": "string", "minLength": 1},
                    "reason": {"type": "string"},
                    "changes": _array(
                        _object(
                            {
                                "item_id": {"type": "string", "minLength": 1},
                                "sh_p_old": {"oneOf": [_RATE, _array(_RATE, min_items=2)]},
                                "sh_p_new": {"oneOf": [_RATE, _array(_RATE, min_items=2)]},
                            }
                        ),
                        min_items=0,
                    ),
                }
            ),
            "bundle_sha256": _HEX64,
        },
        optional=("first_item", "revision"),
    ),
}


def _json_path(error) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(document)"


def _schema_problems(bundle) -> list[str]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(BUNDLE_JSON_SCHEMA)
    problems = []
    for error in sorted(validator.iter_errors(bundle), key=lambda e: list(map(str, e.absolute_path))):
        if error.validator == "oneOf" and error.context:
            # "is not valid under any of the given schemas" names nothing: report the errors of the
            # closest form (same JSON type, fewest errors), e.g. the fixed_length stopping rule's.
            branches = {}
            for sub in error.context:
                branches.setdefault(sub.relative_schema_path[0], []).append(sub)
            closest = min(
                branches.values(),
                key=lambda errs: (
                    any(e.validator == "type" and not e.relative_path for e in errs),
                    len(errs),
                ),
            )
            problems.extend(f"{_json_path(e)}: {e.message}" for e in closest)
        else:
            problems.append(f"{_json_path(error)}: {error.message}")
    return problems
