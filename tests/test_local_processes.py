"""qbank.scale_out.LocalProcesses: forked worker processes give the in-process result bit for bit
(simulation, exposure calibration, the CLI's --scheduler processes:N), without Dask."""

import numpy as np
import pytest
from click.testing import CliRunner

from qbank import FixedLength, Selector, StandardError, generate_pool, simulate
from qbank.cli.main import cli
from qbank.exposure import calibrate_exposure
from qbank.scale_out import LocalProcesses, connect, executor_for

POOL = generate_pool(120, rng=16)
RUN = dict(
    n_examinees=1200,
    stopping=StandardError(0.4, 4, 12),
    selector=Selector("sympson_hetter", sh_p=np.random.default_rng(16).uniform(0.3, 1.0, POOL.n_items)),
    strata_cuts=[-1.0, 0.0, 1.0],
    chunk_size=50,
    rng=1616,
)
ARRAYS = [
    "theta",
    "theta_hat",
    "se",
    "length",
    "administered",
    "responses",
    "selection_count",
    "administration_count",
    "bin_totals",
    "cross_selection_count",
    "cross_administration_count",
]


def test_forked_workers_give_the_in_process_result_bit_for_bit():
    expected = simulate(POOL, **RUN)
    got = simulate(POOL, **RUN, client=LocalProcesses(2))
    for name in ARRAYS:
        a, b = getattr(expected, name), getattr(got, name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    summary = {k: v for k, v in expected.summary.items() if k != "wall_seconds"}
    assert summary == {k: v for k, v in got.summary.items() if k != "wall_seconds"}
    assert got.wall_seconds > 0


def test_exposure_calibration_on_forked_workers_is_identical():
    kwargs = dict(stopping=FixedLength(10), n_examinees=2000, max_iter=4, rng=3)
    expected = calibrate_exposure(POOL, 0.3, **kwargs)
    got = calibrate_exposure(POOL, 0.3, **kwargs, client=LocalProcesses(2))
    assert expected.sh_p.tobytes() == got.sh_p.tobytes()
    figures = [c for c in expected.trace.columns if c != "wall_seconds"]
    assert expected.trace[figures].equals(got.trace[figures])


def test_connect_and_bad_worker_counts():
    with connect("processes:3") as client:
        assert isinstance(client, LocalProcesses) and client.slots == 3
        assert executor_for(client) is client
    for bad in ("processes:0", "processes:x"):
        with pytest.raises(ValueError, match="'processes:N' needs a worker count"), connect(bad):
            pass
    with pytest.raises(ValueError, match="n_workers must be an integer >= 1, got 0"):
        LocalProcesses(0)


def test_cli_simulate_on_forked_workers(tmp_path):
    runner = CliRunner()
    outs = []
    for extra in ([], ["--scheduler", "processes:2"]):
        out = tmp_path / f"run{len(outs)}"
        args = ["simulate", "--pool", "data/demo_pool.csv", "--examinees", "600", "--length", "10"]
        result = runner.invoke(cli, [*args, "--seed", "5", "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        outs.append((out / "exposure.csv").read_text())
    assert outs[0] == outs[1]
    bad = runner.invoke(
        cli,
        [
            "simulate",
            "--pool",
            "data/demo_pool.csv",
            "--out",
            str(tmp_path / "x"),
            "--scheduler",
            "processes:0",
        ],
    )
    assert bad.exit_code == 2 and "--scheduler" in bad.output
