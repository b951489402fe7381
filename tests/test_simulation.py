import numpy as np
import pytest

from qbank import EAP, MAP, MLE, FixedLength, Selector, StandardError, generate_pool, irt, load_pool, simulate


def _reference_cat(pool, theta, selector, length, seed):
    """A plain, slow, one-examinee-at-a-time CAT with the simulator's documented random streams."""
    child = np.random.default_rng(seed).spawn(1)[0]
    n, n_items = theta.size, pool.n_items
    draws = child.random((n, n_items)) if selector.uses_exposure_draws else None
    response_draws = child.random((n, length))
    step_draws = child.random((n, length)) if selector.rule == "randomesque" else None
    sequences, estimates = [], []
    estimator = EAP()
    for e in range(n):
        used, withdrawn, answers = [], set(), []
        theta_hat = 0.0
        for step in range(length):
            info = irt.information([theta_hat], pool.a, pool.b, pool.c, pool.D)[0]
            order = sorted(range(n_items), key=lambda i: (-info[i], i))
            candidates = [i for i in order if i not in used and i not in withdrawn]
            if selector.rule == "randomesque":
                group = candidates[: selector.k]
                chosen = group[int(step_draws[e, step] * len(group))]
            else:
                chosen = None
                for i in candidates:
                    k_i = 1.0 if selector.sh_p is None else selector.sh_p[i]
                    if draws is None or draws[e, i] <= k_i:
                        chosen = i
                        break
                    withdrawn.add(i)
            p = irt.probability([theta[e]], pool.a[chosen], pool.b[chosen], pool.c[chosen], pool.D[chosen])[
                0
            ].item()
            answers.append(float(response_draws[e, step] < p))
            used.append(chosen)
            idx = np.array(used)
            theta_hat = estimator.estimate(
                pool.a[idx][None],
                pool.b[idx][None],
                pool.c[idx][None],
                pool.D[idx][None],
                np.array(answers)[None],
            )[0][0]
        sequences.append(used)
        estimates.append(theta_hat)
    return np.array(sequences), np.array(estimates)


@pytest.mark.parametrize("rule", ["max_info", "sympson_hetter", "randomesque"])
def test_vectorized_simulator_matches_scalar_loop(rule):
    pool = generate_pool(60, rng=21)
    theta = np.random.default_rng(5).normal(size=25)
    sh_p = np.random.default_rng(6).uniform(0.2, 1.0, 60) if rule == "sympson_hetter" else None
    selector = Selector(rule, k=4, sh_p=sh_p)
    result = simulate(pool, theta=theta, stopping=FixedLength(8), selector=selector, rng=99)
    sequences, estimates = _reference_cat(pool, theta, selector, 8, seed=99)
    np.testing.assert_array_equal(result.administered, sequences)
    np.testing.assert_allclose(result.theta_hat, estimates, atol=1e-9)


def test_same_seed_same_result_bit_for_bit():
    pool = generate_pool(120, rng=1)
    selector = Selector("sympson_hetter", sh_p=np.full(120, 0.6))
    runs = [
        simulate(pool, n_examinees=700, selector=selector, stopping=FixedLength(10), rng=42, chunk_size=300)
        for _ in range(2)
    ]
    assert runs[0].theta.tobytes() == runs[1].theta.tobytes()
    assert runs[0].theta_hat.tobytes() == runs[1].theta_hat.tobytes()
    assert runs[0].administered.tobytes() == runs[1].administered.tobytes()
    other = simulate(
        pool, n_examinees=700, selector=selector, stopping=FixedLength(10), rng=43, chunk_size=300
    )
    assert other.theta_hat.tobytes() != runs[0].theta_hat.tobytes()


def test_without_exposure_control_the_first_item_is_everyones():
    pool = load_pool("data/demo_pool.csv")
    result = simulate(pool, n_examinees=500, stopping=FixedLength(5), rng=1)
    first = result.administered[:, 0]
    assert np.unique(first).size == 1
    assert result.summary["max_exposure"] == 1.0
    assert result.items.loc[pool.item_id[first[0]], "exposure_rate"] == 1.0


def test_theta_recovery_and_summary_figures():
    pool = load_pool("data/demo_pool.csv")
    result = simulate(pool, n_examinees=3000, stopping=FixedLength(30), rng=8, exposure_target=0.25)
    s = result.summary
    # 30 items from a 600-item pool: published CAT studies give RMSE about 0.25-0.30.
    assert 0.2 < s["rmse"] < 0.33 and abs(s["bias"]) < 0.03
    assert abs(s["mean_se"] - s["rmse"]) < 0.04  # the posterior SD is honest
    assert np.corrcoef(result.theta, result.theta_hat)[0, 1] > 0.95
    assert s["items_over_target"] == int((result.exposure_rate > 0.25).sum())
    assert s["items_never_used"] == int((result.administration_count == 0).sum())
    assert result.administration_count.sum() == 3000 * 30
    # Overlap from counts equals the pairwise definition on a subsample computed directly.
    sets = [set(row) for row in result.administered]
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 3000, (4000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    direct = np.mean([len(sets[i] & sets[j]) / 30 for i, j in pairs])
    assert s["overlap_rate"] == pytest.approx(direct, abs=0.02)
    cond = result.conditional
    assert cond["n"].sum() == 3000 and (cond["rmse"] > 0).all()


def test_standard_error_stopping():
    pool = load_pool("data/demo_pool.csv")
    stopping = StandardError(0.35, min_length=5, max_length=25)
    result = simulate(pool, n_examinees=800, stopping=stopping, rng=3)
    assert result.length.min() >= 5 and result.length.max() <= 25
    early = result.length < 25
    assert early.any() and (result.se[early] <= 0.35).all()


def test_mle_estimator_and_uniform_thetas_run():
    pool = generate_pool(200, rng=2)
    result = simulate(
        pool,
        n_examinees=300,
        theta_distribution="uniform",
        theta_params=(-2, 2),
        estimator=MLE(),
        stopping=FixedLength(20),
        rng=4,
    )
    assert result.theta.min() >= -2 and result.theta.max() <= 2
    assert result.summary["rmse"] < 0.5


def test_sympson_hetter_counts_selections_and_administrations():
    pool = generate_pool(150, rng=3)
    sh_p = np.full(150, 0.5)
    result = simulate(
        pool,
        n_examinees=1000,
        selector=Selector("sympson_hetter", sh_p=sh_p),
        stopping=FixedLength(10),
        rng=5,
        strata_cuts=[0.0],
    )
    assert (result.selection_count >= result.administration_count).all()
    assert result.selection_count.sum() > result.administration_count.sum()
    # Every selection of an item passes its draw with probability K = 0.5.
    ratio = result.administration_count.sum() / result.selection_count.sum()
    assert ratio == pytest.approx(0.5, abs=0.03)
    p_select, _p_admin = result.stratum_rates()
    assert p_select.shape == (150, 2)
    np.testing.assert_array_equal(
        result.stratum_administration_count.sum(axis=1), result.administration_count
    )


@pytest.mark.parametrize("rule", ["sympson_hetter", "conditional_sympson_hetter", "randomesque"])
def test_accelerated_simulation_is_bit_for_bit_the_plain_one(rule, monkeypatch):
    """The information index, the per-test eligibility of classic Sympson-Hetter and the sparse
    withdrawals change nothing: the same run with every step on the whole pool, from the
    exposure draws, gives identical bytes (low K: many withdrawals, rows past the index tiers)."""
    import qbank.simulation

    pool = generate_pool(300, rng=8)
    rng = np.random.default_rng(9)
    selector = {
        "sympson_hetter": Selector("sympson_hetter", sh_p=rng.uniform(0.05, 1.0, 300)),
        "conditional_sympson_hetter": Selector(
            "conditional_sympson_hetter", sh_p=rng.uniform(0.05, 1.0, (300, 3)), theta_cuts=[-0.5, 0.5]
        ),
        "randomesque": Selector("randomesque", k=4),
    }[rule]
    kwargs = dict(n_examinees=900, selector=selector, stopping=FixedLength(30), rng=17, strata_cuts=[0.0])
    fast = simulate(pool, **kwargs)

    monkeypatch.setattr(qbank.simulation.InformationIndex, "tiers", classmethod(lambda cls, *a, **k: ()))
    if rule == "sympson_hetter":  # and compare eligibility against the draws at every step
        import qbank._chunk

        plain_select = qbank._chunk.select_next

        def from_draws(pool, theta_hat, available, *, eligible=None, exposure_draws=None, **rest):
            assert eligible is not None and exposure_draws is None
            draws = from_draws.draws[: theta_hat.shape[0]]  # everyone stays active (fixed length)
            assert np.array_equal(draws <= selector.sh_p, eligible)
            return plain_select(pool, theta_hat, available, exposure_draws=draws, **rest)

        real_draws = qbank._chunk.exposure_draws

        def keep_draws(rng, n, n_items):
            from_draws.draws = real_draws(rng, n, n_items)
            return from_draws.draws

        monkeypatch.setattr(qbank._chunk, "exposure_draws", keep_draws)
        monkeypatch.setattr(qbank._chunk, "select_next", from_draws)
    plain = simulate(pool, **kwargs)
    for name in ("theta_hat", "se", "administered", "responses", "selection_count", "administration_count"):
        assert getattr(fast, name).tobytes() == getattr(plain, name).tobytes(), name
    assert fast.cross_selection_count.tobytes() == plain.cross_selection_count.tobytes()
    if rule != "randomesque":
        assert (plain.selection_count > plain.administration_count).sum() > 100  # many withdrawals


@pytest.mark.parametrize(
    "case", ["sympson_hetter", "conditional_sympson_hetter", "randomesque", "map", "standard_error", "mixed"]
)
def test_chunks_run_together_give_each_chunks_own_result(case, monkeypatch):
    """Running a task's chunks through the test steps together (one batch) gives every chunk the
    bytes it gets alone: its own draws, its BLAS product of the EAP moments, its estimator calls
    (MAP's Newton steps go on until every row it is given settled) and its bin sums. Uneven last chunk; low K
    and a standard-error rule end tests at different steps."""
    import qbank._chunk

    if case == "mixed":
        pool = generate_pool(150, rng=21, polytomous_share=0.4, polytomous_model="GRM", n_categories=4)
    else:
        pool = generate_pool(150, rng=8)
    rng = np.random.default_rng(9)
    selector = {
        "sympson_hetter": Selector("sympson_hetter", sh_p=rng.uniform(0.05, 1.0, 150)),
        "conditional_sympson_hetter": Selector(
            "conditional_sympson_hetter", sh_p=rng.uniform(0.05, 1.0, (150, 3)), theta_cuts=[-0.5, 0.5]
        ),
        "randomesque": Selector("randomesque", k=4),
    }.get(case, Selector("sympson_hetter", sh_p=rng.uniform(0.02, 0.3, 150)))
    kwargs = dict(
        n_examinees=430,
        selector=selector,
        stopping=StandardError(0.35, min_length=5, max_length=25)
        if case == "standard_error"
        else FixedLength(25),
        estimator=MAP() if case == "map" else None,
        rng=17,
        chunk_size=60,
        strata_cuts=[0.0],
    )
    monkeypatch.setattr(qbank._chunk, "_CELLS_PER_BATCH", 10**9)  # all 8 chunks of a task at once
    together = simulate(pool, **kwargs)
    monkeypatch.setattr(qbank._chunk, "_CELLS_PER_BATCH", 1)  # one chunk at a time
    alone = simulate(pool, **kwargs)
    for name in ("theta_hat", "se", "length", "administered", "responses", "bin_totals"):
        assert getattr(together, name).tobytes() == getattr(alone, name).tobytes(), name
    for name in ("selection_count", "administration_count", "cross_selection_count", "pool_exhausted"):
        assert np.array_equal(getattr(together, name), getattr(alone, name)), name
    if case in ("map", "standard_error"):  # tests ended at different steps
        assert together.pool_exhausted > 0 and len(np.unique(together.length)) > 1


def test_memory_is_bounded_by_chunks_and_long_format():
    pool = generate_pool(100, rng=3)
    result = simulate(pool, n_examinees=1000, stopping=FixedLength(5), rng=1, chunk_size=128)
    long = result.responses_long()
    assert len(long) == 5000 and set(long.columns) == {"person_id", "item_id", "response"}
    assert set(long["response"].unique()) <= {0, 1}


def test_bad_arguments_are_clear():
    pool = generate_pool(10, rng=1)
    with pytest.raises(ValueError, match="exceeds the pool's 10 items"):
        simulate(pool, n_examinees=5, stopping=FixedLength(11))
    with pytest.raises(ValueError, match="give n_examinees or theta"):
        simulate(pool, stopping=FixedLength(5))
    with pytest.raises(ValueError, match="finite numbers"):
        simulate(pool, theta=[0.0, np.nan], stopping=FixedLength(5))
    with pytest.raises(ValueError, match="theta distribution must be"):
        simulate(pool, n_examinees=5, theta_distribution="beta", stopping=FixedLength(5))
    with pytest.raises(TypeError, match=r"qbank\.ItemPool"):
        simulate("pool.csv", n_examinees=5)


def test_wall_seconds_time_the_simulation_not_the_progress_bar(monkeypatch):
    """summary.json's wall_seconds runs from the first task's start to the last task's end: a slow
    progress-bar set-up (importing tqdm took 0.1 s on a 0.05 s run) is not in it."""
    import time

    import qbank.scale_out

    real_bar = qbank.scale_out._bar

    def slow_bar(progress, total):
        time.sleep(0.5)
        return real_bar(progress, total)

    monkeypatch.setattr(qbank.scale_out, "_bar", slow_bar)
    pool = generate_pool(50, rng=2)
    start = time.perf_counter()
    result = simulate(pool, n_examinees=100, stopping=FixedLength(5), rng=3, progress=True)
    assert time.perf_counter() - start >= 0.5
    assert 0 < result.wall_seconds < 0.4
    assert result.summary["wall_seconds"] == result.wall_seconds
