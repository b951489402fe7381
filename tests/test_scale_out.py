"""Simulations on Dask distributed: the same seed gives the same result, bit for bit, in-process,
on thread workers and on process workers, also when a worker dies mid-run."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from qbank import FixedLength, Selector, StandardError, generate_pool, simulate
from qbank.cli.main import cli
from qbank.exposure import calibrate_exposure, validate_exposure
from qbank.scale_out import connect, executor_for
from qbank.study import load_study, run_study

distributed = pytest.importorskip("distributed")

POOL = generate_pool(120, rng=16)
SH_P = np.random.default_rng(16).uniform(0.3, 1.0, POOL.n_items)
RUN = dict(
    n_examinees=1200,
    stopping=StandardError(0.4, 4, 12),
    selector=Selector("sympson_hetter", sh_p=SH_P),
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
    "stratum_selection_count",
    "stratum_administration_count",
    "cross_selection_count",
    "cross_administration_count",
]


def _cluster(processes: bool):
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=":0"
    )
    return cluster, distributed.Client(cluster)


@pytest.fixture(scope="module")
def thread_client():
    cluster, client = _cluster(processes=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def process_client():
    cluster, client = _cluster(processes=True)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def in_process():
    return simulate(POOL, **RUN)


def _assert_identical(expected, got):
    for name in ARRAYS:
        a, b = getattr(expected, name), getattr(got, name)
        if a is None:
            assert b is None, name
            continue
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    drop = {"wall_seconds"}
    assert {k: v for k, v in expected.summary.items() if k not in drop} == {
        k: v for k, v in got.summary.items() if k not in drop
    }


def test_in_process_runs_never_import_dask():
    code = (
        "import sys\n"
        "from qbank import generate_pool, simulate\n"
        "from qbank.study import load_study, run_study\n"
        "simulate(generate_pool(40, rng=1), n_examinees=50, rng=1)\n"
        "c = load_study('simulations/se_stopping.toml')\n"
        "run_study(type(c)(**{**c.__dict__, 'examinees': 40}))\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("where", ["thread_client", "process_client"])
def test_same_seed_same_result_on_dask_workers(request, where, in_process):
    client = request.getfixturevalue(where)
    result = simulate(POOL, client=client, **RUN)
    _assert_identical(in_process, result)


def test_counts_only_runs_return_no_per_examinee_arrays(thread_client, in_process):
    result = simulate(POOL, client=thread_client, keep_examinees=False, keep_estimates=False, **RUN)
    assert result.theta_hat is None and result.administered is None
    np.testing.assert_array_equal(result.administration_count, in_process.administration_count)
    np.testing.assert_array_equal(result.bin_totals, in_process.bin_totals)
    # from the sums instead of the arrays: equal up to the order of summation
    for key in ("bias", "rmse", "mean_se", "mean_length", "overlap_rate"):
        assert result.summary[key] == pytest.approx(in_process.summary[key], rel=1e-12), key
    with pytest.raises(ValueError, match="keep_estimates=False"):
        result.examinees  # noqa: B018
    with pytest.raises(ValueError, match="keep_examinees=True needs keep_estimates=True"):
        simulate(POOL, keep_estimates=False, **RUN)


def test_tasks_group_chunks_for_every_worker(thread_client):
    from qbank.simulation import plan_simulation

    plan = plan_simulation(POOL, slots=executor_for(thread_client).slots, **RUN)
    # 24 chunks of 50 for 2 worker threads: 4 tasks per thread, 3 chunks each
    assert [len(task.args[1]) for task in plan.tasks] == [3] * 8
    assert sum(task.args[0].size for task in plan.tasks) == RUN["n_examinees"]


def test_study_on_dask_equals_in_process(thread_client, tmp_path):
    config = load_study("simulations/se_stopping.toml")
    config = type(config)(**{**config.__dict__, "examinees": 300, "replications": 2})
    local_table, local_results = run_study(config)
    table, results = run_study(config, tmp_path, client=thread_client)
    figures = [c for c in table.columns if c != "wall_seconds"]
    assert table[figures].equals(local_table[figures])
    for name in results:
        _assert_identical(local_results[name], results[name])
    assert (tmp_path / "report.md").read_text().count("means over 2 replications") == 1
    assert len((tmp_path / "replications.csv").read_text().splitlines()) == 1 + 2 * 2


@pytest.mark.parametrize(
    "method,strata_cuts",
    [("sympson_hetter", [0.0]), ("item_eligibility", None)],
    ids=["conditional_sh", "eligibility"],
)
def test_exposure_calibration_and_validation_on_dask(thread_client, process_client, method, strata_cuts):
    settings = dict(
        method=method, strata_cuts=strata_cuts, stopping=FixedLength(8), n_examinees=600, max_iter=3
    )
    local = calibrate_exposure(POOL, 0.3, rng=5, **settings)
    remote = calibrate_exposure(POOL, 0.3, rng=5, client=thread_client, **settings)
    assert np.array_equal(local.sh_p, remote.sh_p) and local.n_iterations == remote.n_iterations
    figures = [c for c in local.trace.columns if c != "wall_seconds"]
    assert local.trace[figures].equals(remote.trace[figures])
    checked = validate_exposure(local, n_examinees=800, rng=6)
    checked_remote = validate_exposure(remote, n_examinees=800, rng=6, client=process_client)
    for name in ARRAYS[:1] + ARRAYS[6:]:
        for run in ("controlled", "uncontrolled"):
            a, b = getattr(getattr(checked, run), name), getattr(getattr(checked_remote, run), name)
            assert np.array_equal(a, b), (run, name)
    rows = [r for r in checked.figures().index if r != "wall_seconds"]
    assert checked.figures().loc[rows].equals(checked_remote.figures().loc[rows])
    assert checked.passed == checked_remote.passed


def test_bad_scheduler_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="worker count"), connect("local:zero"):
        pass
    unreachable = "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"
    with pytest.raises(ValueError, match=re.escape(unreachable)), connect("tcp://127.0.0.1:9", timeout=0.5):
        pass
    with pytest.raises(TypeError, match=r"dask\.distributed\.Client"):
        executor_for("tcp://127.0.0.1:8786")
    result = CliRunner().invoke(
        cli,
        [
            *("simulate", "--pool", "data/demo_pool.csv", "--examinees", "10"),
            *("--out", str(tmp_path), "--scheduler", "nonsense://x"),
        ],
    )
    assert result.exit_code == 2 and "--scheduler" in result.output and "cannot reach" in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def fresh_process_client():
    cluster, client = _cluster(processes=True)
    yield client
    client.close()
    cluster.close()


def test_a_worker_killed_mid_run_changes_nothing(fresh_process_client, in_process):
    """Kill the worker process that is running a task; Dask reruns its tasks elsewhere.

    On a cluster of its own: on the module's cluster, after earlier runs, this run once waited
    more than 300 s after the kill on the loaded 2-core machine (not understood yet)."""
    process_client = fresh_process_client
    pids = process_client.run(os.getpid)
    outcome = {}
    runner = threading.Thread(
        target=lambda: outcome.setdefault("result", simulate(POOL, client=process_client, **RUN))
    )
    runner.start()
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and runner.is_alive() and time.monotonic() < deadline:
        busy = [address for address, keys in process_client.processing().items() if keys]
        if busy:
            victim = busy[0]
            os.kill(pids[victim], signal.SIGKILL)
        else:
            time.sleep(0.005)
    runner.join(timeout=300)
    assert victim is not None, "no task was seen running"
    assert not runner.is_alive(), "the run did not finish within 300 s of the kill"
    _assert_identical(in_process, outcome["result"])
    with pytest.raises(ProcessLookupError):
        os.kill(pids[victim], 0)
