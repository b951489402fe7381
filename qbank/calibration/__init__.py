"""Item calibration: marginal maximum likelihood Rasch/1PL/2PL/3PL, graded response (GRM) and
generalized partial credit (GPCM) items by the Bock-Aitkin EM algorithm, alone or mixed in one run.

Complete or sparse (CAT) responses, wide or long (the delivery service's
``person_id, item_id, response`` log), MAP priors, standard errors, and fixed-parameter
calibration of new or pretest items against a bank (Kim 2006). The output pool uses the
logistic metric (``D = 1``) and is read by ``qbank simulate`` and ``qbank sh`` directly.

girth (``girth.twopl_mml``, ``girth.threepl_mml``, ``girth.grm_mml``, ``girth.pcm_mml``) is the independent cross-check on complete
data, not the engine; :mod:`qbank.calibration.girth_check` wraps it.
"""

from qbank.calibration._calibrator import (
    DICHOTOMOUS_MODELS,
    MODELS,
    CalibrationReport,
    CalibrationWarning,
    Calibrator,
    calibrate,
    parse_prior,
)
from qbank.calibration._data import LONG_COLUMNS, CalibrationError, ResponseMatrix, read_responses
from qbank.calibration._em import Hierarchical

__all__ = [
    "DICHOTOMOUS_MODELS",
    "LONG_COLUMNS",
    "MODELS",
    "CalibrationError",
    "CalibrationReport",
    "CalibrationWarning",
    "Calibrator",
    "Hierarchical",
    "ResponseMatrix",
    "calibrate",
    "parse_prior",
    "read_responses",
]
