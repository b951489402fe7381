import numpy as np
import pandas as pd
import pytest

from qbank import (
    InformationIndex,
    ItemPool,
    Selector,
    blueprint_mask,
    generate_pool,
    select_next,
    session_rng,
)
from qbank import polytomous as poly
from qbank.irt import information


def mixed_pool(n_items, rng):
    """3PL, GRM (5 categories) and GPCM (3 and 4 categories, reversals allowed) items in one pool."""
    parts = [
        generate_pool(n_items // 2, rng=rng, polytomous_share=0.4, polytomous_model="GRM", n_categories=5),
        generate_pool(n_items // 4, rng=rng, polytomous_share=0.6, polytomous_model="GPCM", n_categories=4),
        generate_pool(
            n_items - n_items // 2 - n_items // 4,
            rng=rng,
            polytomous_share=0.5,
            polytomous_model="GPCM",
            n_categories=3,
        ),
    ]
    frames = [
        p.to_frame().assign(item_id=lambda f, k=k: f"P{k}-" + f["item_id"]) for k, p in enumerate(parts)
    ]
    return ItemPool.from_frame(
        pd.concat(frames, ignore_index=True).iloc[rng.permutation(n_items)], name="mixed"
    )


@pytest.fixture
def tiny_pool():
    # Items ranked by information at theta = 0: I3 (a=2.0) > I2 (a=1.5) > I1 (a=1.0) > I0 (b far away).
    return ItemPool.from_arrays(
        a=[1.0, 1.0, 1.5, 2.0], b=[3.0, 0.0, 0.0, 0.0], c=[0, 0, 0, 0], item_id=["I0", "I1", "I2", "I3"]
    )


def test_max_info_picks_most_informative_available(tiny_pool):
    available = np.array([[True, True, True, True], [True, True, True, False]])
    sel = select_next(tiny_pool, [0.0, 0.0], available, selector=Selector("max_info"))
    assert sel.item.tolist() == [3, 2]
    assert sel.withdrawn_rows.size == 0


def test_sympson_hetter_withdraws_rejected_and_tries_next_in_same_step(tiny_pool):
    sh_p = np.array([1.0, 1.0, 0.5, 0.3])
    # Examinee 0: I3 drawn 0.9 > 0.3 -> withdrawn, I2 drawn 0.2 <= 0.5 -> administered.
    # Examinee 1: I3 drawn 0.1 <= 0.3 -> administered at once, nothing withdrawn.
    # Examinee 2: I3 and I2 rejected, I1 (K = 1) administered.
    draws = np.array([[0.5, 0.5, 0.2, 0.9], [0.5, 0.5, 0.9, 0.1], [0.0, 0.99, 0.6, 0.4]])
    sel = select_next(
        tiny_pool,
        np.zeros(3),
        np.ones((3, 4), bool),
        selector=Selector("sympson_hetter", sh_p=sh_p),
        exposure_draws=draws,
    )
    assert sel.item.tolist() == [2, 3, 1]
    assert list(zip(sel.withdrawn_rows.tolist(), sel.withdrawn_items.tolist())) == [(0, 3), (2, 2), (2, 3)]
    mask = sel.withdrawn_mask(4)
    assert mask[0].tolist() == [False, False, False, True]


def test_sympson_hetter_with_every_item_rejected_returns_none(tiny_pool):
    sel = select_next(
        tiny_pool,
        [0.0],
        np.ones((1, 4), bool),
        selector=Selector("sympson_hetter", sh_p=np.zeros(4)),
        exposure_draws=np.full((1, 4), 0.5),
    )
    assert sel.item.tolist() == [-1]
    assert sorted(sel.withdrawn_items.tolist()) == [0, 1, 2, 3]


def test_conditional_sympson_hetter_uses_the_stratum_of_the_estimate(tiny_pool):
    # Stratum 0 (theta < 0) lets I3 through, stratum 1 (theta >= 0) never does.
    sh_p = np.array([[1, 1], [1, 1], [1, 1], [1.0, 0.0]])
    selector = Selector("conditional_sympson_hetter", sh_p=sh_p, theta_cuts=[0.0])
    sel = select_next(
        tiny_pool,
        [-0.01, 0.01],
        np.ones((2, 4), bool),
        selector=selector,
        exposure_draws=np.full((2, 4), 0.5),
    )
    assert sel.item.tolist() == [3, 2]


def test_randomesque_chooses_uniformly_among_top_k(tiny_pool):
    selector = Selector("randomesque", k=2)
    picks = [
        select_next(tiny_pool, [0.0], np.ones((1, 4), bool), selector=selector, step_draws=[u]).item[0]
        for u in (0.0, 0.49, 0.5, 0.99)
    ]
    assert picks == [3, 3, 2, 2]


def test_a_stratified_uses_position_stratum_and_b_match():
    pool = ItemPool.from_arrays(a=[0.5, 0.6, 1.5, 1.6], b=[-1.0, 1.0, -1.0, 1.0], c=np.zeros(4))
    selector = Selector("a_stratified", n_strata=2)
    first = select_next(
        pool, [0.9, -0.9], np.ones((2, 4), bool), selector=selector, position=0, test_length=4
    )
    late = select_next(pool, [0.9, -0.9], np.ones((2, 4), bool), selector=selector, position=2, test_length=4)
    assert first.item.tolist() == [1, 0]  # low-a stratum first
    assert late.item.tolist() == [3, 2]  # high-a stratum in the second half


def test_blueprint_mask_maximum_and_minimum():
    topic_codes = np.array([0, 0, 1, 2])
    counts = np.array([[2, 0, 0], [0, 0, 0]])
    mask = blueprint_mask(topic_codes, counts, maximum=[2, 5, 5])
    assert mask.tolist() == [[False, False, True, True], [True, True, True, True]]
    # One position left and topic 1 still needs an item: only topic 1 stays open.
    forced = blueprint_mask(topic_codes, counts, minimum=[0, 1, 0], remaining=[1, 5])
    assert forced.tolist() == [[False, False, True, False], [True, True, True, True]]


def test_selector_validation():
    with pytest.raises(ValueError, match="rule must be one of"):
        Selector("best")
    with pytest.raises(ValueError, match="needs sh_p"):
        Selector("sympson_hetter")
    with pytest.raises(ValueError, match=r"sh_p must be in \[0, 1\]"):
        Selector("sympson_hetter", sh_p=[1.2])
    with pytest.raises(ValueError, match="increasing cut points"):
        Selector("conditional_sympson_hetter", sh_p=np.ones((3, 3)), theta_cuts=[1.0, 0.0])
    pool = generate_pool(5, rng=1)
    with pytest.raises(ValueError, match="needs exposure_draws"):
        select_next(pool, [0.0], np.ones((1, 5), bool), selector=Selector("sympson_hetter", sh_p=np.ones(5)))
    with pytest.raises(ValueError, match="sh_p has 3 items but the pool has 5"):
        select_next(
            pool,
            [0.0],
            np.ones((1, 5), bool),
            selector=Selector("sympson_hetter", sh_p=np.ones(3)),
            exposure_draws=np.ones((1, 5)),
        )
    with pytest.raises(ValueError, match="available must have shape"):
        select_next(pool, [0.0], np.ones((1, 4), bool), selector=Selector())


@pytest.mark.parametrize("kind", ["dichotomous", "mixed"])
@pytest.mark.parametrize("rule", ["max_info", "randomesque", "sympson_hetter", "conditional_sympson_hetter"])
def test_information_index_gives_exactly_the_full_pool_result(rule, kind):
    rng = np.random.default_rng(11)
    pool = generate_pool(300, rng=rng) if kind == "dichotomous" else mixed_pool(300, rng)
    n = 3000
    theta_hat = np.concatenate([rng.uniform(-4.5, 4.5, n - 2), [-4.0, 4.0]])  # includes outside the index
    available = rng.random((n, 300)) > rng.uniform(0, 0.5, (n, 1))  # many rows need the fallback
    kwargs = {
        "max_info": {},
        "randomesque": {"k": 7},
        "sympson_hetter": {"sh_p": rng.uniform(0.05, 1, 300)},
        "conditional_sympson_hetter": {"sh_p": rng.uniform(0.05, 1, (300, 3)), "theta_cuts": [-1.0, 1.0]},
    }[rule]
    selector = Selector(rule, **kwargs)
    extra = {"exposure_draws": rng.random((n, 300)), "step_draws": rng.random(n)}
    full = select_next(pool, theta_hat, available, selector=selector, **extra)
    fast = select_next(
        pool, theta_hat, available, selector=selector, index=InformationIndex.tiers(pool, 12), **extra
    )
    np.testing.assert_array_equal(full.item, fast.item)
    np.testing.assert_array_equal(full.withdrawn_rows, fast.withdrawn_rows)
    np.testing.assert_array_equal(full.withdrawn_items, fast.withdrawn_items)
    if rule == "sympson_hetter":  # the draw decided once per test gives the same steps
        eligible = extra["exposure_draws"] <= selector.sh_p
        for index in (None, InformationIndex.tiers(pool, 12)):
            once = select_next(pool, theta_hat, available, selector=selector, index=index, eligible=eligible)
            np.testing.assert_array_equal(full.item, once.item)
            np.testing.assert_array_equal(full.withdrawn_rows, once.withdrawn_rows)
            np.testing.assert_array_equal(full.withdrawn_items, once.withdrawn_items)
    if rule == "max_info":  # and the full path is the plain argmax
        info = information(theta_hat, pool.a, pool.b, pool.c, pool.D)
        if kind == "mixed":
            codes, steps = pool.model_codes, pool.threshold_table
            info = poly.category_information(theta_hat[:, None], pool.a, pool.b, pool.c, pool.D, codes, steps)
        np.testing.assert_array_equal(full.item, np.where(available, info, -np.inf).argmax(axis=1))


def test_polytomous_information_bounds_hold_inside_every_cell():
    rng = np.random.default_rng(4)
    pool = mixed_pool(120, rng)
    items = np.flatnonzero(pool.model_codes != 0)
    edges = np.linspace(-4, 4, 81)
    lower, upper = poly.information_bounds(
        edges, pool.a[items], pool.D[items], pool.item_model[items], pool.thresholds[items]
    )
    inside = edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * np.linspace(0, 1, 41)  # (80, 41)
    args = (
        pool.a[items],
        pool.b[items],
        pool.c[items],
        pool.D[items],
        pool.item_model[items],
        pool.thresholds[items],
    )
    info = poly.category_information(inside[..., None], *args)  # (80, 41, n_poly)
    assert np.all(info.min(axis=1) >= lower - 1e-12) and np.all(info.max(axis=1) <= upper + 1e-12)
    assert np.median(upper / np.maximum(info.max(axis=1), 1e-300)) < 1.3  # and not loose


def test_session_rng_is_replayable():
    assert session_rng("quiz-1").random(3).tolist() == session_rng("quiz-1").random(3).tolist()
    assert session_rng("quiz-1").random() != session_rng("quiz-2").random()


def test_randomesque_size_has_its_own_name_and_k_still_works():
    assert Selector("randomesque", randomesque_size=3).depth == 3
    assert Selector("randomesque", k=2).randomesque_size == 2  # the former keyword
    assert Selector("randomesque", randomesque_size=4).k == 4  # and the former attribute
    assert Selector("randomesque").k == 5
    assert Selector("randomesque", k=2).to_dict() == {"rule": "randomesque", "k": 2}
    with pytest.raises(ValueError, match="randomesque_size must be >= 1"):
        Selector("randomesque", randomesque_size=0)
