"""qbank: computerized adaptive testing with proper iterative Sympson-Hetter exposure control.

The public API of the psychometric core; notebooks and the CLI use only these names.
"""

from qbank.calibration import Calibrator, calibrate
from qbank.estimation import EAP, MAP, MLE, make_estimator
from qbank.exposure import (
    BundleError,
    ExposureCalibration,
    ExposureValidation,
    build_bundle,
    calibrate_exposure,
    read_bundle,
    validate_bundle,
    validate_exposure,
    write_bundle,
)
from qbank.irt import information, log_likelihood, probability, test_information
from qbank.pool import ItemPool, PoolError, generate_pool, load_pool, save_pool
from qbank.selection import (
    InformationIndex,
    Selection,
    Selector,
    blueprint_mask,
    exposure_draws,
    select_next,
    session_rng,
    sh_p_from_frame,
)
from qbank.simulation import SimulationResult, draw_abilities, simulate
from qbank.stopping import FixedLength, StandardError

__version__ = "0.1.0"

__all__ = [
    "EAP",
    "MAP",
    "MLE",
    "BundleError",
    "Calibrator",
    "ExposureCalibration",
    "ExposureValidation",
    "FixedLength",
    "InformationIndex",
    "ItemPool",
    "PoolError",
    "Selection",
    "Selector",
    "SimulationResult",
    "StandardError",
    "blueprint_mask",
    "build_bundle",
    "calibrate",
    "calibrate_exposure",
    "draw_abilities",
    "exposure_draws",
    "generate_pool",
    "information",
    "load_pool",
    "log_likelihood",
    "make_estimator",
    "probability",
    "read_bundle",
    "save_pool",
    "select_next",
    "session_rng",
    "sh_p_from_frame",
    "simulate",
    "test_information",
    "validate_bundle",
    "validate_exposure",
    "write_bundle",
]
