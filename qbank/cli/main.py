"""Entry point of the ``qbank`` command. Each subcommand lives in its own module, registered
here by import path and short help and imported only when it runs, so ``qbank --help`` starts
without numpy or pandas. The delivery service adds its commands (``serve``, ``reestimate``, ...)
through the ``qbank.cli`` entry points (see :mod:`qbank.cli._lazy`); the core never imports it.
Errors a user can fix become ``click`` usage errors naming the bad option, field or row, never
a traceback."""

from __future__ import annotations

import click

from qbank.cli._lazy import LazyGroup

# name -> (module:attribute, short help = the first sentence of the command's docstring)
CORE_COMMANDS = {
    "simulate": (
        "qbank.cli.simulate:simulate",
        "Simulate adaptive tests on a pool and write summary.json, exposure.csv, conditional.csv, "
        "examinees.parquet and PNG plots to --out.",
    ),
    "sh": (
        "qbank.cli.sh:sh",
        "Calibrate exposure-control parameters by iterated simulation (Sympson & Hetter 1985; "
        "conditional: Stocking & Lewis 1998; item eligibility: van der Linden & Veldkamp 2004), "
        "validate them on fresh simulees, and write bundle.json and report.md to --out.",
    ),
    "calibrate": (
        "qbank.cli.calibrate:calibrate",
        "Calibrate items by marginal maximum likelihood (Bock-Aitkin EM) and write a pool (D = 1) "
        "that `qbank simulate` and `qbank sh` read directly.",
    ),
    "study": (
        "qbank.cli.study:study",
        "Run every condition of a study CONFIG on the same simulees and write a report.",
    ),
    "analytics": (
        "qbank.cli.analytics:analytics",
        "Topic mastery, blueprint coverage, exposure and selector A/B analytics.",
    ),
    "publish": (
        "qbank.cli.publish:publish",
        "Upload BUNDLE (a bundle.json from qbank sh, or its folder) to the service at --url.",
    ),
}


@click.group(cls=LazyGroup, lazy=CORE_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qbank")
def cli():
    """qbank: computerized adaptive testing with proper Sympson-Hetter exposure control."""


if __name__ == "__main__":  # pragma: no cover
    cli()
