"""Shared CLI helpers: turn user-fixable errors into clean click errors. numpy, pandas and the
core's modules are imported inside the helpers, so importing a command stays cheap."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import numpy as np

    from qbank.pool import ItemPool


def read_pool(path: str, option: str = "--pool") -> ItemPool:
    from qbank.pool import PoolError, load_pool

    try:
        return load_pool(path)
    except PoolError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def read_k_file(path: str, pool: ItemPool, option: str = "--k-file") -> np.ndarray:
    """CLI wrapper of :func:`qbank.selection.sh_p_from_frame` for a CSV path."""
    import pandas as pd

    from qbank.selection import sh_p_from_frame

    try:
        frame = pd.read_csv(path, dtype={"item_id": str})
        return sh_p_from_frame(frame, pool, source=str(path))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def parse_numbers(text: str, option: str, count: int | None = None) -> tuple:
    """Comma-separated numbers, e.g. ``-1,0,1``; a click error naming ``option`` otherwise."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if (
        not values
        or (count is not None and len(values) != count)
        or not all(math.isfinite(x) for x in values)
    ):
        what = f"{count} numbers" if count else "numbers"
        raise click.BadParameter(f"expected {what} separated by commas, got {text!r}", param_hint=option)
    return values


def stopping_options(command):
    """The stopping-rule options (``--length``, ``--se-target``, ``--min-length``) that
    :func:`stopping_from_options` reads, shared by the commands that run CATs."""
    options = [
        click.option(
            "--length",
            type=click.IntRange(min=1),
            default=30,
            show_default=True,
            help="Test length (maximum length with --se-target).",
        ),
        click.option(
            "--se-target",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Stop when SE <= this (variable length).",
        ),
        click.option(
            "--min-length",
            type=click.IntRange(min=1),
            default=5,
            show_default=True,
            help="Minimum length with --se-target.",
        ),
    ]
    for option in reversed(options):  # applied bottom-up, like stacked decorators
        command = option(command)
    return command


def stopping_from_options(length: int, se_target: float | None, min_length: int):
    """Fixed length, or SE stopping with ``--min-length`` .. ``--length`` items."""
    from qbank.stopping import FixedLength, StandardError

    if se_target is None:
        return FixedLength(length)
    if min_length > length:
        raise click.BadParameter(f"{min_length} exceeds --length {length}", param_hint="--min-length")
    return StandardError(se_target, min_length, length)


def estimator_options(command):
    """The ability-estimator options (``--estimator``, ``--dodd``) that
    :func:`estimator_from_options` reads, shared by the commands that run CATs."""
    options = [
        click.option(
            "--estimator", type=click.Choice(["eap", "map", "mle"]), default="eap", show_default=True
        ),
        click.option(
            "--dodd",
            is_flag=True,
            help="With --estimator mle: Dodd's (1990) step heuristic for all-correct and all-wrong "
            "patterns (catsim's default) instead of the bound, stepping within the pool's b range.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def estimator_from_options(name: str, dodd: bool, pool: ItemPool):
    """The estimator of ``--estimator``; with ``--dodd``, MLE with Dodd's heuristic and the pool's
    difficulty range recorded in it (so a bundle carries what the service must apply)."""
    from qbank.estimation import make_estimator

    if not dodd:
        return make_estimator(name)
    if name != "mle":
        raise click.BadParameter(
            f"Dodd's heuristic is for --estimator mle, got --estimator {name}", param_hint="--dodd"
        )
    return make_estimator("mle", dodd=True, b_range=(float(pool.b.min()), float(pool.b.max())))


def out_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {path}: {exc}", param_hint="--out") from None
    return out


scheduler_option = click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run the simulations as tasks on a Dask cluster: a scheduler address (tcp://host:8786) "
    "or local:N for N worker processes on this machine (needs qbank[dist]; see docs/scale-out.md); "
    "or processes:N for N forked worker processes here without Dask. Same results, bit for bit. "
    "Default: in this process.",
)


@contextlib.contextmanager
def scheduler_client(address: str | None):
    """:func:`qbank.scale_out.connect` with its errors as a click error naming ``--scheduler``."""
    from qbank.scale_out import connect

    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(connect(address))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--scheduler") from None
        yield client
