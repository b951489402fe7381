"""The simulator on mixed pools: category responses drawn at the true theta, the category table
of the incremental posterior, reproducibility, theta recovery and ``qbank simulate``."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from qbank import EAP, MAP, ItemPool, generate_pool, save_pool, simulate
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


# ---------------------------------------------------------------------------- scalar reference
def _categories(item, theta):
    """P(X = k | theta) of one item from the model definitions (3PL, Samejima, Muraki), in plain Python."""
    model, a, b, c, D, steps = item
    if model == 0:
        p = c + (1 - c) / (1 + math.exp(-D * a * (theta - b)))
        return [1 - p, p]
    if model == 1:
        star = [1.0] + [1 / (1 + math.exp(-D * a * (theta - s))) for s in steps] + [0.0]
        return [star[k] - star[k + 1] for k in range(len(steps) + 1)]
    z = [0.0]
    for s in steps:
        z.append(z[-1] + D * a * (theta - s))
    top = max(z)
    weights = [math.exp(v - top) for v in z]
    return [w / sum(weights) for w in weights]


def _information(item, theta):
    """Fisher information sum_k P_k'^2 / P_k with P_k' by the chain rule, in plain Python."""
    model, a, b, c, D, steps = item
    if model == 0:
        p = c + (1 - c) / (1 + math.exp(-D * a * (theta - b)))
        return (D * a) ** 2 * ((1 - p) / p) * ((p - c) / (1 - c)) ** 2
    if model == 1:
        star = [1.0] + [1 / (1 + math.exp(-D * a * (theta - s))) for s in steps] + [0.0]
        slope = [D * a * s * (1 - s) for s in star]
        return sum(
            (slope[k] - slope[k + 1]) ** 2 / (star[k] - star[k + 1])
            for k in range(len(steps) + 1)
            if star[k] > star[k + 1]
        )
    p = _categories(item, theta)
    mean = sum(k * pk for k, pk in enumerate(p))
    return (D * a) ** 2 * sum((k - mean) ** 2 * pk for k, pk in enumerate(p))


def _reference_mixed_cat(pool, theta, selector, length, seed):
    """One examinee at a time, with the simulator's documented random streams: exposure uniforms,
    then one uniform per answer (score X = #{k >= 1 : u < P(X >= k)}), then randomesque draws."""
    items = [
        (int(m), float(a), float(b), float(c), float(d), [float(t) for t in s if not math.isnan(t)])
        for m, a, b, c, d, s in zip(pool.model_codes, pool.a, pool.b, pool.c, pool.D, pool.threshold_table)
    ]
    child = np.random.default_rng(seed).spawn(1)[0]
    n, n_items = theta.size, pool.n_items
    draws = child.random((n, n_items)) if selector.uses_exposure_draws else None
    response_draws = child.random((n, length))
    step_draws = child.random((n, length)) if selector.rule == "randomesque" else None
    grid = np.linspace(-6, 6, 81).tolist()
    prior = [math.exp(-t * t / 2) for t in grid]
    sequences, estimates = [], []
    for e in range(n):
        used, withdrawn, posterior = [], set(), list(prior)
        theta_hat = sum(t * w for t, w in zip(grid, posterior)) / sum(posterior)
        for step in range(length):
            info = [_information(item, theta_hat) for item in items]
            candidates = [i for i in sorted(range(n_items), key=lambda i: (-info[i], i)) if i not in used]
            candidates = [i for i in candidates if i not in withdrawn]
            if selector.rule == "randomesque":
                group = candidates[: selector.k]
                chosen = group[int(step_draws[e, step] * len(group))]
            else:
                chosen = None
                for i in candidates:
                    if draws is None or draws[e, i] <= selector.sh_p[i]:
                        chosen = i
                        break
                    withdrawn.add(i)
            p = _categories(items[chosen], float(theta[e]))
            u = response_draws[e, step]
            score = sum(u < sum(p[k:]) for k in range(1, len(p)))
            used.append(chosen)
            posterior = [w * _categories(items[chosen], t)[score] for t, w in zip(grid, posterior)]
            theta_hat = sum(t * w for t, w in zip(grid, posterior)) / sum(posterior)
        sequences.append(used)
        estimates.append(theta_hat)
    return np.array(sequences), np.array(estimates)


@pytest.mark.parametrize("rule", ["max_info", "sympson_hetter", "randomesque"])
def test_vectorized_simulator_matches_a_scalar_loop_on_a_mixed_pool(rule):
    parts = [
        generate_pool(40, rng=31, polytomous_share=0.5, polytomous_model="GRM", n_categories=4),
        generate_pool(20, rng=32, polytomous_share=0.5, polytomous_model="GPCM", n_categories=3),
    ]
    frames = [
        p.to_frame().assign(item_id=lambda f, k=k: f"S{k}-" + f["item_id"]) for k, p in enumerate(parts)
    ]
    pool = ItemPool.from_frame(pd.concat(frames, ignore_index=True))
    theta = np.random.default_rng(5).normal(size=25)
    sh_p = np.random.default_rng(6).uniform(0.2, 1.0, 60) if rule == "sympson_hetter" else None
    selector = Selector(rule, k=4, sh_p=sh_p)
    result = simulate(pool, theta=theta, stopping=FixedLength(8), selector=selector, rng=99)
    sequences, estimates = _reference_mixed_cat(pool, theta, selector, 8, seed=99)
    np.testing.assert_array_equal(result.administered, sequences)
    np.testing.assert_allclose(result.theta_hat, estimates, atol=1e-9)
    assert len(set(pool.model_codes[sequences.ravel()].tolist())) == 3  # every model was served


@pytest.mark.parametrize("rule", ["max_info", "sympson_hetter", "conditional_sympson_hetter", "randomesque"])
def test_accelerated_mixed_simulation_is_bit_for_bit_the_plain_one(rule, monkeypatch):
    """On a mixed pool, the information index (with its GRM/GPCM bounds) changes nothing: the same
    run with every step on the whole pool gives identical bytes (low K: many withdrawals)."""
    import qbank.simulation

    parts = [
        generate_pool(200, rng=41, polytomous_share=0.4, polytomous_model="GRM", n_categories=5),
        generate_pool(100, rng=42, polytomous_share=0.5, polytomous_model="GPCM", n_categories=4),
    ]
    frames = [
        p.to_frame().assign(item_id=lambda f, k=k: f"A{k}-" + f["item_id"]) for k, p in enumerate(parts)
    ]
    pool = ItemPool.from_frame(pd.concat(frames, ignore_index=True))
    rng = np.random.default_rng(9)
    selector = {
        "max_info": Selector("max_info"),
        "sympson_hetter": Selector("sympson_hetter", sh_p=rng.uniform(0.05, 1.0, 300)),
        "conditional_sympson_hetter": Selector(
            "conditional_sympson_hetter", sh_p=rng.uniform(0.05, 1.0, (300, 3)), theta_cuts=[-0.5, 0.5]
        ),
        "randomesque": Selector("randomesque", k=4),
    }[rule]
    kwargs = dict(n_examinees=900, selector=selector, stopping=FixedLength(30), rng=17, strata_cuts=[0.0])
    fast = simulate(pool, **kwargs)
    monkeypatch.setattr(qbank.simulation.InformationIndex, "tiers", classmethod(lambda cls, *a, **k: ()))
    plain = simulate(pool, **kwargs)
    for name in ("theta_hat", "se", "administered", "responses", "selection_count", "administration_count"):
        assert getattr(fast, name).tobytes() == getattr(plain, name).tobytes(), name
