"""The layering of DESIGN ("the core never imports the service") and a ``qbank`` command that starts
without the heavy libraries: checked on the source and in fresh interpreters."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from qbank.cli.main import CORE_COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "pandas", "scipy", "matplotlib", "sqlalchemy", "fastapi", "uvicorn", "jinja2")


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            names.update(a.value for a in node.args[:1] if isinstance(a, ast.Constant))
    return names


def test_nothing_in_the_core_imports_the_service():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == "service"
        )
        for path in sorted((ROOT / "qbank").rglob("*.py"))
    }
    offenders = {path: modules for path, modules in offenders.items() if modules}
    assert offenders == {}


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from service.db import migrate\n    import service.ui\n")
    assert _imported_modules(module) == {"service.db", "service.ui"}


def _fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter; it prints a JSON object as its last line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# the heavy top-level packages loaded, and every module of the service loaded
_LOADED = (
    "import json, sys\n"
    f"heavy = {{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})\n"
    "print(json.dumps(sorted(heavy | {m for m in sys.modules if m.split('.')[0] == 'service'})))"
)


def test_qbank_help_imports_no_heavy_module():
    loaded = _fresh(
        "from click.testing import CliRunner\nfrom qbank.cli.main import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\nassert r.exit_code == 0 and 'serve' in r.output, r.output\n"
        + _LOADED
    )
    assert loaded == ["service", "service.cli"]  # the registry of the service's commands, nothing else


@pytest.mark.parametrize("command", ["simulate", "sh", "calibrate", "study"])
def test_core_commands_run_without_the_service(command):
    loaded = _fresh(
        "from click.testing import CliRunner\nfrom qbank.cli.main import cli\n"
        f"r = CliRunner().invoke(cli, [{command!r}, '--help'])\nassert r.exit_code == 0, r.output\n" + _LOADED
    )
    assert not {"service", "sqlalchemy", "fastapi"} & set(loaded), loaded


def test_core_simulation_runs_without_the_service(tmp_path):
    loaded = _fresh(
        "from click.testing import CliRunner\nfrom qbank.cli.main import cli\n"
        f"r = CliRunner().invoke(cli, ['simulate', '--pool', 'data/demo_pool.csv', '--examinees', '50', "
        f"'--length', '5', '--out', {str(tmp_path)!r}])\nassert r.exit_code == 0, r.output\n" + _LOADED
    )
    assert "numpy" in loaded and not {"service", "sqlalchemy", "fastapi"} & set(loaded), loaded


def test_registered_short_helps_are_the_commands_own():
    ctx = click.Context(cli)
    groups = [(cli, "")]
    checked = 0
    while groups:
        group, prefix = groups.pop()
        for name, (_, short_help) in group._registry().items():
            command = group.get_command(ctx, name)
            assert command.get_short_help_str(limit=1000) == short_help, f"{prefix}{name}"
            checked += 1
            if isinstance(command, click.Group):
                groups.append((command, f"{name} "))
    assert checked >= len(CORE_COMMANDS) + 8  # the service's eight commands included


def test_the_service_commands_join_the_one_qbank_command():
    names = set(cli.list_commands(click.Context(cli)))
    assert {"simulate", "sh", "calibrate", "study", "serve", "load-demo", "reestimate", "demo"} <= names
    analytics = cli.get_command(click.Context(cli), "analytics")
    assert {"report", "export", "targets"} <= set(analytics.list_commands(click.Context(analytics)))


def test_modules_are_small_enough_to_read_in_one_sitting():
    """No module of the core or the service (migrations aside) is over 600 lines."""
    too_long = {
        str(path.relative_to(ROOT)): n
        for package in ("qbank", "service")
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and (n := len(path.read_text().splitlines())) > 600
    }
    assert too_long == {}
