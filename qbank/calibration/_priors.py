"""Item priors of the calibration: parsing (``'beta:5,17'``, ``'normal:0,0.5'``,
``'hierarchical'``), checking, and the log prior of the estimated parameters (Mislevy 1986)."""

from __future__ import annotations

import math

from qbank.calibration import _em
from qbank.calibration._data import CalibrationError
from qbank.calibration._em import Hierarchical

__all__ = ["check_prior", "log_prior", "parse_prior"]


def parse_prior(text: str | None, kind: str, option: str = "prior"):
    """Parse ``'beta:5,17'``, ``'normal:0,0.5'`` or ``'none'`` into a tuple (or None).

    For a normal prior, ``'hierarchical'`` or ``'hierarchical:mean,sd'`` gives a
    :class:`Hierarchical` prior (default 0, 0.5) whose mean is re-estimated every EM cycle.

    Parameters
    ----------
    text : str or None
    kind : {'beta', 'normal'}
        The family the parameter takes.
    option : str
        Name used in error messages.

    Raises
    ------
    CalibrationError
        Wrong family, not two numbers, sd <= 0, alpha or beta < 1.
    """
    if text is None or str(text).strip().lower() in {"none", "off", ""}:
        return None
    family, _, values = str(text).partition(":")
    if kind == "normal" and family.strip().lower() == "hierarchical":
        if not values.strip():
            return Hierarchical()
        try:
            mean, sd = (float(v) for v in values.split(","))
        except ValueError:
            raise CalibrationError(
                f"{option} needs two numbers after 'hierarchical:', got {text!r}"
            ) from None
        return check_prior(Hierarchical(mean, sd), kind, option)
    if family.strip().lower() != kind:
        also = ", 'hierarchical[:mean,sd]'" if kind == "normal" else ""
        raise CalibrationError(f"{option} must look like '{kind}:x,y'{also} or 'none', got {text!r}")
    try:
        first, second = (float(v) for v in values.split(","))
    except ValueError:
        raise CalibrationError(f"{option} needs two numbers after '{kind}:', got {text!r}") from None
    return check_prior((first, second), kind, option)


def check_prior(prior, kind, option):
    if prior is None:
        return None
    if kind == "normal" and isinstance(prior, str):
        return parse_prior(prior, kind, option)
    if kind == "normal" and isinstance(prior, Hierarchical):
        mean, sd = check_prior((prior.mean, prior.sd), kind, option)
        check_prior((0.0, prior.hyper_sd), kind, f"{option} hyper_sd")
        return Hierarchical(mean, sd, float(prior.hyper_sd))
    try:
        first, second = (float(v) for v in prior)
    except (TypeError, ValueError):
        raise CalibrationError(f"{option} must be two numbers or None, got {prior!r}") from None
    if not (math.isfinite(first) and math.isfinite(second)):
        raise CalibrationError(f"{option} must be finite, got {prior!r}")
    if kind == "normal" and second <= 0:
        raise CalibrationError(f"{option}: the normal sd must be > 0, got {second}")
    # alpha, beta >= 1 keep the log prior concave, so the M-step stays a maximisation.
    if kind == "beta" and (first < 1 or second < 1):
        raise CalibrationError(f"{option}: Beta alpha and beta must be >= 1, got {first}, {second}")
    return (first, second)


def log_prior(priors, x, cols, shared_a) -> float:
    """Log prior of the estimated parameters; a common 1PL log a counts once."""
    per_item = _em.Priors(
        loga=priors.loga if _em.LOGA in cols and not shared_a else None, b=priors.b, c=priors.c
    )
    total = float(per_item.log_density(x).sum())
    if shared_a:
        total += float(_em.Priors(loga=priors.loga, b=None, c=None).log_density(x[:1])[0])
    return total
