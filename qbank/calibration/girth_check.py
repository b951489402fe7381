"""girth 0.8.0 as an independent cross-check of :mod:`qbank.calibration` on complete data.

girth is not the engine: its MML has no item priors and no fixed-parameter calibration, and it
fits difficulties by matching proportions correct against an N(0, 1) population, which fails
on adaptive data (b RMSE about 2 where our EM gets 0.2; see ``benchmarks/README.md``). On
complete data it is an independent implementation to compare with.

The shim
--------
girth 0.8.0's ``threepl_mml`` crashes on numpy >= 2.4 with ``ValueError: setting an array
element with a sequence``: it passes a ``(1, 1)`` array as ``scalar`` to
``rasch_mml._mml_abstract``, whose objective then returns a 1-element array, so
``scipy.optimize.fminbound`` returns a 1-element array that numpy >= 2.4 no longer converts to
a scalar on assignment. :func:`girth_threepl` calls ``threepl_mml`` with ``_mml_abstract``
replaced, for the duration of the call only, by a wrapper that flattens ``scalar`` first; the
arithmetic girth does is unchanged. Remove the shim when girth fixes this upstream.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager

import numpy as np
import pandas as pd

from qbank.calibration._data import read_responses

__all__ = ["girth_gpcm", "girth_grm", "girth_threepl", "girth_twopl"]


def _items_by_persons(responses):
    import girth

    data = read_responses(responses)
    dense = data.to_dense()
    # girth wants [items x participants] of integers; it skips cells coded INVALID_RESPONSE.
    coded = np.where(np.isnan(dense), girth.INVALID_RESPONSE, dense).T.astype(int)
    return data.item_id.astype(str), coded


@contextmanager
def _threepl_scalar_shim():
    # The package re-exports the function under the module's name, so fetch the module itself.
    module = importlib.import_module("girth.unidimensional.dichotomous.threepl_mml")
    original = module._mml_abstract

    def flattened(difficulty, scalar, discrimination, theta, distribution):
        return original(difficulty, np.ravel(scalar), discrimination, theta, distribution)

    module._mml_abstract = flattened
    try:
        yield module.threepl_mml
    finally:
        module._mml_abstract = original


def girth_twopl(responses) -> pd.DataFrame:
    """girth's 2PL MML estimates (logistic metric, D = 1).

    Parameters
    ----------
    responses : DataFrame, array_like of shape (n_persons, n_items), path or ResponseMatrix
        Missing cells are passed to girth as ``girth.INVALID_RESPONSE``; girth still fits each
        difficulty against an N(0, 1) population, which is why it fails on adaptive data.

    Returns
    -------
    DataFrame indexed by item_id with columns ``a, b, c`` (``c = 0``)
    """
    from girth import twopl_mml

    item_id, data = _items_by_persons(responses)
    result = twopl_mml(data)
    return pd.DataFrame(
        {"a": result["Discrimination"], "b": result["Difficulty"], "c": 0.0},
        index=pd.Index(item_id, name="item_id"),
    )


def girth_threepl(responses) -> pd.DataFrame:
    """girth's 3PL MML estimates (logistic metric, D = 1), through the numpy >= 2.4 shim.

    Returns
    -------
    DataFrame indexed by item_id with columns ``a, b, c``
    """
    item_id, data = _items_by_persons(responses)
    with _threepl_scalar_shim() as threepl_mml:
        result = threepl_mml(data)
    return pd.DataFrame(
        {"a": result["Discrimination"], "b": result["Difficulty"], "c": result["Guessing"]},
        index=pd.Index(item_id, name="item_id"),
    )


def _polytomous_frame(item_id, result) -> pd.DataFrame:
    thresholds = np.atleast_2d(result["Difficulty"])
    frame = pd.DataFrame({"a": result["Discrimination"]}, index=pd.Index(item_id, name="item_id"))
    for k in range(thresholds.shape[1]):
        frame[f"b{k + 1}"] = thresholds[:, k]
    return frame


def girth_grm(responses, options=None) -> pd.DataFrame:
    """girth's graded response model MML estimates (``girth.grm_mml``, logistic metric D = 1).

    girth fits ``a`` by a bounded line search on the marginal likelihood and, for each ``a``, the
    thresholds by matching the observed category proportions against an N(0, 1) population
    (integral equations), not by maximising the likelihood in them; on complete data the two
    agree to sampling noise, which is what the comparison checks. It needs every category of
    every item observed and scores starting at 0 in the data.

    Returns
    -------
    DataFrame indexed by item_id with columns ``a, b1, b2, ...`` (NaN past an item's last threshold)
    """
    from girth import grm_mml

    item_id, data = _items_by_persons(responses)
    return _polytomous_frame(item_id, grm_mml(data, options))


def girth_gpcm(responses, options=None) -> pd.DataFrame:
    """girth's generalized partial credit model MML estimates (``girth.pcm_mml``, which estimates a
    discrimination per item, so it is Muraki's GPCM; logistic metric D = 1).

    Returns
    -------
    DataFrame indexed by item_id with columns ``a, b1, b2, ...`` (NaN past an item's last threshold)
    """
    from girth import pcm_mml

    item_id, data = _items_by_persons(responses)
    return _polytomous_frame(item_id, pcm_mml(data, options))
