"""Lazily loaded ``click`` groups, and the plugin hook through which other packages add commands.

A command is registered as ``name -> ("module:attribute", short help)``: ``qbank --help`` lists
the short helps without importing any command module (so without numpy, pandas or the web
stack), and a command's module is imported only when that command runs or shows its own help.

Other packages (the delivery service) add commands through the ``qbank.cli`` entry-point group
of their distribution: each entry point names a mapping of the same form, whose keys are command
paths (``"serve"`` or ``"analytics export"`` for a subcommand of the ``analytics`` group). The
core never names those packages.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import click

PLUGIN_GROUP = "qbank.cli"

Registry = dict[str, tuple[str, str]]

_plugins: Registry | None = None


def plugin_commands() -> Registry:
    """Every command path that installed packages register in the ``qbank.cli`` entry points."""
    global _plugins
    if _plugins is None:
        found: Registry = {}
        for point in entry_points(group=PLUGIN_GROUP):
            try:
                found.update(point.load())
            except ImportError as exc:  # a package listed in stale metadata must not break the core
                click.echo(f"qbank: commands of {point.value} unavailable: {exc}", err=True)
        _plugins = found
    return _plugins


def load_target(target: str):
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; ``path`` is its name in plugin keys
    (``""`` for the top-level ``qbank`` group)."""

    def __init__(self, *args, lazy: Registry, path: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy)
        self._path = path

    def _registry(self) -> Registry:
        prefix = f"{self._path} " if self._path else ""
        extra = {
            key.removeprefix(prefix): spec
            for key, spec in plugin_commands().items()
            if key.startswith(prefix) and " " not in key.removeprefix(prefix)
        }
        return {**self._lazy, **extra}

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self._registry()})

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands:
            # the core's own commands resolve without reading the plugins' registries
            spec = self._lazy.get(cmd_name) or self._registry().get(cmd_name)
            if spec is None:
                return None
            self.add_command(load_target(spec[0]), cmd_name)
        return self.commands[cmd_name]

    def format_commands(self, ctx, formatter):
        """Short helps from the registry, so listing commands imports none of them."""
        registry = self._registry()
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows = []
        for name in names:
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            else:
                rows.append((name, click.Command(name, help=registry[name][1]).get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
