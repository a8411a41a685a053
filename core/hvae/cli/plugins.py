"""``hvae plugins``: which distributions are installed and what each registers."""

from __future__ import annotations

import json

import click

from hvae.plugins import KINDS, registry


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
    return {"plugins": sorted(plugins.values(), key=lambda p: p["name"]), "failed": failures}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugin distributions, their versions and the names each registers.

    A plugin that fails to load is listed under 'failed' with the reason; the others
    still work.
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
    if report["failed"]:
        click.echo("failed:")
        for f in report["failed"]:
            click.echo(f"  {f['plugin']} ({f['distribution'] or '?'}): {f['reason']}")
