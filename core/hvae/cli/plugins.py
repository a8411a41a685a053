"""``hvae plugins``: which distributions are installed and what each registers."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from hvae.fielddocs import field_docs
from hvae.plugins import KINDS, registry

OPTION_COLUMN = 36  # characters of name=default before the meanings' column


def register(main: click.Group) -> None:
    """Add ``plugins`` to the ``hvae`` command line."""
    main.add_command(plugins)


def plugin_report() -> dict:
    reg = registry()
    plugins: dict[str, dict] = {}
    for name, _plugin in reg.pm.list_name_plugin():
        dist, version = reg.distributions.get(name, (None, None))
        plugins[name] = {"name": name, "distribution": dist, "version": version,
                         **{kind: [] for kind in KINDS}}
    for kind in KINDS:
        for r in reg.registrations(kind):
            entry = plugins.setdefault(r.plugin, {"name": r.plugin, **{k: [] for k in KINDS}})
            entry["distribution"], entry["version"] = r.distribution, r.version
            entry[kind].append(r.name)
    failures = [{"plugin": f.plugin, "distribution": f.distribution, "reason": f.reason} for f in reg.failures]
    options = {r.name: [{"name": d.name, "default": _shown(d.default), "meaning": d.meaning}
                        for d in field_docs(r.factory.Options)] for r in reg.registrations("converters")}
    return {"plugins": sorted(plugins.values(), key=lambda p: p["name"]), "failed": failures,
            "converter_options": options}


def _shown(default: Any) -> Any:
    """A default as JSON holds it (tuples as lists; no default as null)."""
    return None if default is dataclasses.MISSING else json.loads(json.dumps(default, default=str))


def _option_lines(options: list[dict]) -> list[str]:
    """``name=default  meaning`` per option, the meanings in one column (on a line of their own below a
    long default)."""
    shown = [f"{o['name']}={_as_typed(o['default'])}" for o in options]
    width = max((len(text) for text in shown if len(text) <= OPTION_COLUMN), default=0)
    lines = []
    for text, option in zip(shown, options):
        if len(text) > width:
            lines += [text, f"{'':<{width}}  {option['meaning']}"]
        else:
            lines.append(f"{text:<{width}}  {option['meaning']}".rstrip())
    return lines


def _as_typed(value: Any) -> str:
    """A default as it is typed after -o (true, none, 1,2)."""
    if value is None or isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugin distributions, their versions and the names each registers.

    Each converter's options are listed with their defaults and what they mean; give them to
    train, run or data prepare as -o KEY=VALUE. A plugin that fails to load is listed under
    'failed' with the reason; the others still work.
    """
    report = plugin_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for p in report["plugins"]:
        dist = f"{p['distribution']} {p['version']}" if p.get("distribution") else "in-process"
        click.echo(f"{p['name']} ({dist})")
        for kind in KINDS:
            if p[kind]:
                click.echo(f"  {kind}: {', '.join(p[kind])}")
        for name in p["converters"]:
            click.echo(f"  converter {name}: options (-o KEY=VALUE), with their defaults")
            for line in _option_lines(report["converter_options"][name]):
                click.echo(f"    {line}")
    if report["failed"]:
        click.echo("failed:")
        for f in report["failed"]:
            click.echo(f"  {f['plugin']} ({f['distribution'] or '?'}): {f['reason']}")
