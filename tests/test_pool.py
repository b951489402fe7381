import numpy as np
import pandas as pd
import pytest

from qbank import ItemPool, PoolError, generate_pool, load_pool, save_pool


def _write(tmp_path, text):
    path = tmp_path / "pool.csv"
    path.write_text(text)
    return path


def test_demo_pool_loads_with_topics():
    pool = load_pool("data/demo_pool.csv")
    assert pool.n_items >= 500
    assert pool.model == "3PL"
    assert set(pool.topic) >= {"addition", "fractions"}
    assert (pool.a > 0).all() and ((pool.c >= 0) & (pool.c < 1)).all()


@pytest.mark.parametrize(
    "text,message",
    [
        ("item_id,a,b\nQ1,1,0\n", r"missing column\(s\) \['c'\]"),
        (
            "item_id,a,b,c\nQ1,1,0,0.2\nQ17,0,0,0.2\nQ203,-1,0,0.2\n",
            r"a must be in \(0, 20\]; bad items: \['Q17', 'Q203'\]",
        ),
        ("item_id,a,b,c\nQ1,1,0,1.0\nQ2,1,0,0.2\n", r"c must be in \[0, 1\); bad items: \['Q1'\]"),
        ("item_id,a,b,c\nQ1,1,0,-0.1\n", r"c must be in \[0, 1\)"),
        ("item_id,a,b,c\nQ1,1,0,0.2\nQ1,1,1,0.2\n", r"duplicate item_id \['Q1'\]"),
        ("item_id,a,b,c\nQ1,1,abc,0.2\n", r"column 'b' must be a finite number; bad items: \['Q1'\]"),
        ("item_id,a,b,c\nQ1,1,,0.2\n", r"column 'b' must be a finite number; bad items: \['Q1'\]"),
        ("item_id,a,b,c\n,1,0,0.2\n", r"item_id is empty in data row\(s\) \[1\]"),
        ("item_id,a,b,c,D\nQ1,1,0,0.2,0\n", r"D must be in \(0, 2\]"),
        (
            "item_id,a,b,c\nQ1,1,1e308,0.2\nQ2,1,-21,0.2\n",
            r"b must be in \[-20, 20\]; bad items: \['Q1', 'Q2'\]",
        ),
        ("item_id,a,b,c\nQ1,1,1e999,0.2\n", r"column 'b' must be a finite number"),
        ("item_id,a,b,c\n", r"no items"),
    ],
)
def test_bad_pools_name_the_field_and_rows(tmp_path, text, message):
    with pytest.raises(PoolError, match=message):
        load_pool(_write(tmp_path, text))


def test_missing_file_is_a_pool_error(tmp_path):
    with pytest.raises(PoolError, match="no such file"):
        load_pool(tmp_path / "absent.csv")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip(tmp_path, suffix):
    pool = generate_pool(50, rng=3, topics=["x", "y"])
    back = load_pool(save_pool(pool, tmp_path / f"p{suffix}"))
    np.testing.assert_array_equal(back.item_id, pool.item_id)
    np.testing.assert_allclose(back.a, pool.a, atol=1e-6)
    np.testing.assert_allclose(back.c, pool.c, atol=1e-6)
    np.testing.assert_array_equal(back.topic, pool.topic)


def test_defaults_and_models():
    pool = ItemPool.from_frame(pd.DataFrame({"item_id": ["a", "b"], "a": [1, 1], "b": [0, 1], "c": [0, 0]}))
    assert pool.D.tolist() == [1.0, 1.0] and pool.model == "1PL"
    assert generate_pool(20, "2PL", rng=1).model == "2PL"
    assert generate_pool(20, rng=1).model == "3PL"
    with pytest.raises(PoolError, match="model must be"):
        generate_pool(5, "4PL")


def test_sha256_depends_on_parameters_only():
    pool = generate_pool(30, rng=5)
    same = ItemPool.from_arrays(pool.a, pool.b, pool.c, item_id=pool.item_id, name="other")
    assert pool.sha256() == same.sha256()
    moved = ItemPool.from_arrays(pool.a, pool.b + 0.01, pool.c, item_id=pool.item_id)
    assert moved.sha256() != pool.sha256()


def test_pool_arrays_are_read_only():
    pool = generate_pool(5, rng=1)
    with pytest.raises(ValueError):
        pool.a[0] = 3.0


def test_generate_pool_is_seeded():
    np.testing.assert_array_equal(generate_pool(40, rng=9).b, generate_pool(40, rng=9).b)
