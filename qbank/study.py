"""Simulation studies: several selection conditions on the same pool and the same simulees,
described by a TOML file (see ``simulations/``) and written as a report folder."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qbank import plots
from qbank._tables import markdown_table
from qbank.pool import load_pool
from qbank.rules import CatRules, rules_from_settings
from qbank.scale_out import executor_for
from qbank.selection import sh_p_from_frame
from qbank.simulation import SimulationResult, draw_abilities, plan_simulation, run_simulations
from qbank.stopping import FixedLength, StandardError

__all__ = ["StudyConfig", "load_study", "run_study"]

_TOP_KEYS = {
    "name",
    "pool",
    "examinees",
    "seed",
    "exposure_target",
    "theta_distribution",
    "theta_params",
    "estimator",
    "stopping",
    "condition",
    "replications",
}
_CONDITION_KEYS = {"name", "selector", "k", "n_strata", "k_file"}


@dataclass(frozen=True)
class StudyConfig:
    name: str
    pool: Path
    examinees: int
    seed: int
    stopping: object
    conditions: tuple
    exposure_target: float | None = 0.25
    theta_distribution: str = "normal"
    theta_params: tuple = (0.0, 1.0)
    estimator: str = "eap"
    replications: int = 1


def _stopping_from(table: dict, source: str):
    rule = table.get("rule", "fixed_length")
    try:
        if rule == "fixed_length":
            return FixedLength(int(table["length"]))
        if rule == "standard_error":
            return StandardError(
                float(table["se_target"]), int(table.get("min_length", 1)), int(table.get("max_length", 50))
            )
    except KeyError as exc:
        raise ValueError(f"{source}: [stopping] needs '{exc.args[0]}'") from None
    raise ValueError(f"{source}: [stopping] rule must be 'fixed_length' or 'standard_error', got {rule!r}")


def load_study(path) -> StudyConfig:
    """Read and check a study TOML file; errors name the key and the condition."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read study config: {exc}") from None
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    for key in ("pool", "condition"):
        if key not in raw:
            raise ValueError(f"{path}: missing '{key}'")
    conditions = []
    for i, cond in enumerate(raw["condition"], start=1):
        label = cond.get("name", f"condition {i}")
        bad = set(cond) - _CONDITION_KEYS
        if bad:
            raise ValueError(f"{path}: [[condition]] {label!r}: unknown key(s) {sorted(bad)}")
        if "selector" not in cond:
            raise ValueError(f"{path}: [[condition]] {label!r}: missing 'selector'")
        conditions.append({"name": label, **cond})
    replications = raw.get("replications", 1)
    if not isinstance(replications, int) or isinstance(replications, bool) or replications < 1:
        raise ValueError(f"{path}: 'replications' must be an integer >= 1, got {replications!r}")
    names = [c["name"] for c in conditions]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: condition names must be unique, got {names}")
    return StudyConfig(
        name=raw.get("name", path.stem),
        pool=(path.parent / raw["pool"]).resolve(),
        examinees=int(raw.get("examinees", 10_000)),
        seed=int(raw.get("seed", 0)),
        stopping=_stopping_from(raw.get("stopping", {"rule": "fixed_length", "length": 30}), str(path)),
        conditions=tuple(conditions),
        exposure_target=raw.get("exposure_target", 0.25),
        theta_distribution=raw.get("theta_distribution", "normal"),
        theta_params=tuple(raw.get("theta_params", (0.0, 1.0))),
        estimator=raw.get("estimator", "eap"),
        replications=replications,
    )


def _replication_seed(seed: int, replication: int):
    """Replication 0 uses the study's seed itself (a one-replication study is today's study);
    replication r > 0 an independent stream from the entropy (seed, r)."""
    return seed if replication == 0 else np.random.SeedSequence([seed, replication])


def _rules_for(config: StudyConfig, cond: dict, pool) -> CatRules:
    """A condition's complete rules, through the one builder (:func:`qbank.rules.rules_from_settings`)."""
    sh_p = None
    if cond.get("k_file"):
        k_path = config.pool.parent / cond["k_file"]
        sh_p = sh_p_from_frame(pd.read_csv(k_path, dtype={"item_id": str}), pool, source=str(k_path))
    return rules_from_settings(
        cond["selector"],
        estimator=config.estimator,
        stopping=config.stopping,
        sh_p=sh_p,
        k=int(cond.get("k", 5)),
        n_strata=int(cond.get("n_strata", 4)),
        exposure_target=config.exposure_target,
    )


_KEYS = [
    "rmse",
    "bias",
    "mean_se",
    "mean_length",
    "max_exposure",
    "items_never_used",
    "overlap_rate",
    "wall_seconds",
]


def run_study(
    config: StudyConfig, out=None, progress: bool = False, client=None
) -> tuple[pd.DataFrame, dict]:
    """Run every condition on the same simulees; return a comparison table and the results.

    Every (condition, replication) is its own set of tasks, all submitted together, so on a Dask
    ``client`` a study keeps every worker busy; the figures are the same, bit for bit, as
    in-process (only ``wall_seconds`` differs). With ``replications`` > 1 each replication draws
    fresh simulees (shared by its conditions), the table holds the means over replications and
    ``replications.csv`` one row per (condition, replication); ``results`` holds each
    condition's first replication.

    When ``out`` is given, each condition's report goes to ``out/<name>/`` and the comparison
    (``comparison.csv``, ``report.md``, overlaid plots) to ``out/``.
    """
    pool = load_pool(config.pool)
    conditions = {cond["name"]: _rules_for(config, cond, pool) for cond in config.conditions}
    executor = executor_for(client)
    # All runs share the cluster: cut each into tasks for its share of the worker threads, so a
    # big grid makes tasks of the target size instead of many tiny ones.
    slots = max(1, executor.slots // (config.replications * len(conditions)))
    plans, labels = [], []
    for replication in range(config.replications):
        seed = _replication_seed(config.seed, replication)
        rng = np.random.default_rng(seed)
        theta = draw_abilities(config.examinees, config.theta_distribution, config.theta_params, rng)
        for name, rules in conditions.items():
            plans.append(
                plan_simulation(
                    pool,
                    theta=theta,
                    stopping=rules.stopping,
                    selector=rules.selector,
                    estimator=rules.estimator,
                    first_item=rules.first_item,
                    rng=np.random.default_rng(seed),
                    exposure_target=rules.exposure_target,
                    slots=slots,
                )
            )
            labels.append((name, replication + 1))
    runs = run_simulations(plans, executor, progress="study" if progress else None)
    results: dict[str, SimulationResult] = {name: r for (name, rep), r in zip(labels, runs) if rep == 1}
    if out is not None:
        for name, result in results.items():
            result.to_dir(Path(out) / name)
    keys = list(_KEYS)
    if config.exposure_target is not None:
        keys.insert(5, "items_over_target")
    per_replication = pd.DataFrame(
        [
            {"condition": name, "replication": rep, **{k: r.summary[k] for k in keys}}
            for (name, rep), r in zip(labels, runs)
        ]
    )
    if config.replications == 1:
        table = per_replication.drop(columns="replication").set_index("condition")
    else:
        table = per_replication.drop(columns="replication").groupby("condition", sort=False).mean()
    table = table.astype(float)  # one numeric type per column, as a comparison table
    table.index.name = "condition"
    if out is not None:
        _write_report(config, pool, table, per_replication, results, Path(out))
    return table, results


def _write_report(config, pool, table, per_replication, results, out: Path) -> None:
    table.to_csv(out / "comparison.csv")
    if config.replications > 1:
        per_replication.to_csv(out / "replications.csv", index=False)
    exposure_png = plots.exposure_sorted(
        {k: r.exposure_rate for k, r in results.items()},
        out / "exposure_sorted.png",
        target=config.exposure_target,
    )
    conditional_png = plots.conditional_accuracy(
        {k: r.conditional for k, r in results.items()}, out / "conditional.png"
    )
    replicated = (
        f" Figures are means over {config.replications} replications (each in `replications.csv`);"
        " plots and condition folders show replication 1."
        if config.replications > 1
        else ""
    )
    lines = [
        f"# Study `{config.name}`",
        "",
        f"Pool `{config.pool.name}` ({pool.n_items} items), {config.examinees} simulees "
        f"({config.theta_distribution} {list(config.theta_params)}), stopping {config.stopping.to_dict()}, "
        f"estimator {config.estimator}, seed {config.seed}.{replicated}",
        "",
        markdown_table(table.reset_index()),
        "",
        f"![exposure]({exposure_png.name})",
        "",
        f"![conditional]({conditional_png.name})",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
