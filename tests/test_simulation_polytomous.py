"""The simulator on mixed pools: category responses drawn at the true theta, the category table
of the incremental posterior, reproducibility, theta recovery and ``qbank simulate``."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from qbank import EAP, MAP, generate_pool, save_pool, simulate
from qbank import polytomous as poly
from qbank._chunk import _category_scores
from qbank.cli.main import cli
from qbank.estimation import MLE
from qbank.selection import Selector
from qbank.stopping import FixedLength, StandardError


@pytest.fixture(scope="module")
def mixed():
    return generate_pool(150, rng=21, polytomous_share=0.4, polytomous_model="GRM", n_categories=4)


def test_category_scores_follow_the_category_probabilities(mixed):
    """Scores drawn at fixed theta have the model's category frequencies (and a dichotomous item
    answers 1 exactly when u < P, as in a dichotomous pool)."""
    rng = np.random.default_rng(3)
    n = 200_000
    for item, theta in ((int(np.flatnonzero(mixed.model_codes == poly.GRM)[0]), 0.3), (0, -0.4)):
        draws = rng.random(n)
        scores = _category_scores(mixed, np.full(n, theta), np.full(n, item), draws)
        p = poly.category_probabilities(
            theta,
            mixed.a[item],
            mixed.b[item],
            mixed.c[item],
            mixed.D[item],
            mixed.model_codes[item],
            mixed.threshold_table[item],
        )
        freq = np.bincount(scores, minlength=p.size) / n
        np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(0.25 / n))
        if mixed.model_codes[item] == poly.DICHOTOMOUS:
            np.testing.assert_array_equal(scores == 1, draws < p[1])


def test_a_mixed_simulation_is_reproducible_and_recovers_theta(mixed):
    theta = np.random.default_rng(1).normal(size=1500)
    first = simulate(mixed, theta=theta, stopping=FixedLength(20), rng=5)
    again = simulate(mixed, theta=theta, stopping=FixedLength(20), rng=5)
    np.testing.assert_array_equal(first.theta_hat, again.theta_hat)
    np.testing.assert_array_equal(first.administered, again.administered)
    top = mixed.n_categories[first.administered.astype(np.intp)] - 1
    assert np.all((first.responses >= 0) & (first.responses <= top))
    assert first.responses.max() == 3  # polytomous items were given and scored
    rmse = np.sqrt(np.mean((first.theta_hat - theta) ** 2))
    assert rmse < 0.3 and abs(np.mean(first.theta_hat - theta)) < 0.05
    assert np.corrcoef(first.theta_hat, theta)[0, 1] > 0.95
    long = first.responses_long()
    assert len(long) == 1500 * 20 and set(long["response"].unique()) == {0, 1, 2, 3}


def test_polytomous_items_are_more_informative_than_dichotomous_ones_in_a_cat():
    """A pool of GRM items of 5 categories reaches the SE target in fewer items than its 2PL twin."""
    theta = np.random.default_rng(2).normal(size=600)
    stopping = StandardError(0.3, min_length=1, max_length=40)
    grm = generate_pool(200, "2PL", rng=9, polytomous_share=1.0, polytomous_model="GRM", n_categories=5)
    twopl = generate_pool(200, "2PL", rng=9)
    lengths = [simulate(p, theta=theta, stopping=stopping, rng=4).length.mean() for p in (grm, twopl)]
    assert lengths[0] < 0.7 * lengths[1]


@pytest.mark.parametrize("estimator", [EAP(), MAP(), MLE()])
@pytest.mark.parametrize("rule", ["max_info", "randomesque", "sympson_hetter", "a_stratified"])
def test_every_rule_and_estimator_runs_on_a_mixed_pool(mixed, estimator, rule):
    kwargs = {"sh_p": np.full(mixed.n_items, 0.7)} if rule == "sympson_hetter" else {}
    result = simulate(
        mixed,
        n_examinees=150,
        stopping=FixedLength(12),
        selector=Selector(rule, **kwargs),
        estimator=estimator,
        rng=8,
    )
    assert np.all(np.isfinite(result.theta_hat)) and np.all(result.length == 12)
    assert np.corrcoef(result.theta_hat, result.theta)[0, 1] > 0.8


def test_qbank_simulate_takes_a_mixed_pool_file(tmp_path, mixed):
    path = save_pool(mixed, tmp_path / "mixed.csv")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--pool",
            str(path),
            "--examinees",
            "300",
            "--length",
            "10",
            "--seed",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_examinees"] == 300
    examinees = pd.read_parquet(out / "examinees.parquet")
    assert max(max(r) for r in examinees["responses"]) == 3
