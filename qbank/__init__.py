"""qbank: computerized adaptive testing with proper iterative Sympson-Hetter exposure control.

The public API of the psychometric core; notebooks and the CLI use only these names. Each is
imported from its module on first use (PEP 562), so ``import qbank`` (and ``qbank --help``)
stays fast and loads numpy, pandas or scipy only when a name that needs them is used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# module -> the public names it provides
_EXPORTS = {
    "qbank.calibration": ("Calibrator", "calibrate"),
    "qbank.estimation": ("EAP", "MAP", "MLE", "make_estimator"),
    "qbank.exposure": (
        "BundleError",
        "ExposureCalibration",
        "ExposureValidation",
        "build_bundle",
        "calibrate_exposure",
        "read_bundle",
        "validate_bundle",
        "validate_exposure",
        "write_bundle",
    ),
    "qbank.irt": ("information", "log_likelihood", "probability", "test_information"),
    "qbank.pool": ("ItemPool", "PoolError", "generate_pool", "load_pool", "save_pool"),
    "qbank.selection": (
        "InformationIndex",
        "Selection",
        "Selector",
        "blueprint_mask",
        "exposure_draws",
        "select_next",
        "session_rng",
        "sh_p_from_frame",
    ),
    "qbank.rules": (
        "CatRules",
        "FirstItem",
        "audit_test",
        "rules_from_bundle",
        "rules_from_settings",
        "run_test",
    ),
    "qbank.simulation": ("SimulationResult", "draw_abilities", "simulate"),
    "qbank.stopping": ("FixedLength", "StandardError"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'qbank' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})
