"""The plugin host: built-ins arrive as ordinary plugins, broken plugins are reported and skipped.

Entry-point plugins are simulated two ways: registered in-process through ``hvae.testing``,
and as a real (broken) distribution installed with pip into a temporary folder that a
subprocess finds through PYTHONPATH.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import hvae
from hvae import hookspecs
from hvae.cli import main
from hvae.data import DEMO_DIR
from hvae.errors import PluginError, UnknownComponentError
from hvae.hookspecs import hookimpl
from hvae.plugins import KINDS, registry
from hvae_converters.drums import DrumsConverter

REPO = Path(__file__).resolve().parents[1]
HVAE = str(Path(sys.executable).parent / "hvae")
PLUGIN_PACKAGES = ("hvae_converters", "hvae_decoders", "hvae_losses")
BUILTIN = {"converters": "hvae-converters", "decoders": "hvae-decoders", "losses": "hvae-losses"}


def plugins_json(*extra_args: str) -> dict:
    result = CliRunner().invoke(main, ["plugins", "--json", *extra_args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- built-ins ------------------------------------------------------------------------------------------------

def test_builtins_are_hvae_entry_points_of_their_own_distributions():
    points = {ep.name: (ep.value, ep.dist.name) for ep in importlib.metadata.entry_points(group="hvae")}
    for plugin, distribution in BUILTIN.items():
        assert points[plugin] == (distribution.replace("-", "_"), distribution)


def test_every_builtin_component_is_registered_by_its_distribution():
    reg = registry()
    converters = [r.name for r in reg.registrations("converters") if r.distribution == "hvae-converters"]
    assert converters == ["drums", "groove", "melody", "multiperf", "trio"]
    owners = {"converters": "hvae-converters", "encoders": "hvae-decoders", "decoders": "hvae-decoders",
              "losses": "hvae-losses"}
    for kind, distribution in owners.items():
        builtins = [r for r in reg.registrations(kind) if r.distribution == distribution]
        assert builtins, f"{distribution} registers no {kind}"
        assert all(r.plugin == distribution.removeprefix("hvae-") for r in builtins)
    assert not [f for f in reg.failures if f.distribution in BUILTIN.values()]


def test_plugins_json_lists_the_three_distributions_with_versions_and_names():
    report = plugins_json()
    by_distribution = {p["distribution"]: p for p in report["plugins"]}
    reg = registry()
    for distribution in BUILTIN.values():
        entry = by_distribution[distribution]
        assert entry["version"] == importlib.metadata.version(distribution)
        for kind in KINDS:
            assert entry[kind] == [r.name for r in reg.registrations(kind) if r.distribution == distribution]
    assert by_distribution["hvae-converters"]["converters"] == ["drums", "groove", "melody", "multiperf", "trio"]
    assert by_distribution["hvae-decoders"]["decoders"] and by_distribution["hvae-decoders"]["encoders"]
    assert by_distribution["hvae-losses"]["losses"]
    assert report["failed"] == []


def test_plugins_text_lists_each_distribution_and_what_it_registers():
    output = CliRunner().invoke(main, ["plugins"]).output
    for entry in plugins_json()["plugins"]:
        assert f"{entry['name']} ({entry['distribution']} {entry['version']})" in output
        for kind in KINDS:
            if entry[kind]:
                assert f"  {kind}: {', '.join(entry[kind])}" in output
    assert "failed:" not in output


def test_plugins_lists_each_converters_options_with_default_and_meaning():
    output = CliRunner().invoke(main, ["plugins"]).output
    assert "  converter drums: options (-o KEY=VALUE), with their defaults" in output
    lines = [" ".join(line.split()) for line in output.splitlines()]
    assert "slice_bars=2 window length in bars, one window every bar; None: each track is one example" in lines
    assert "humanize=false inputs keep the hits only: velocities and offsets set to 0" in lines
    assert "min_pitch=21 lowest MIDI pitch modelled; lower notes are dropped" in lines


def test_every_option_of_every_builtin_converter_has_a_meaning():
    for name, options in plugins_json()["converter_options"].items():
        for option in options:
            assert option["meaning"], f"{name}: {option['name']}"
        fields = dataclasses.fields(hvae.get_converter(name).Options)
        assert [(o["name"], o["default"]) for o in options] == [
            (f.name, list(f.default) if isinstance(f.default, tuple) else f.default) for f in fields]


# --- names ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, one", [("converters", "converter"), ("encoders", "encoder"),
                                       ("decoders", "decoder"), ("losses", "loss")])
def test_an_unknown_name_lists_what_is_installed_and_points_to_hvae_plugins(kind, one):
    with pytest.raises(UnknownComponentError) as caught:
        registry().get(kind, "no-such-thing")
    message = str(caught.value)
    assert message.startswith(f"Unknown {one} 'no-such-thing'. ") and "Run 'hvae plugins'" in message
    assert f"Installed: {', '.join(registry().names(kind))}." in message


def test_get_converter_with_an_unknown_name_says_what_is_installed():
    with pytest.raises(UnknownComponentError, match=r"Installed: drums, groove, melody.*hvae plugins"):
        hvae.get_converter("drumz")


def converter_class(converter_name: str) -> type[hvae.Converter]:
    """A converter class that only has a name: enough for the registry."""
    return type("NamedOnly", (hvae.Converter,), {"name": converter_name})


def make_converter_plugin(converter_name: str):
    class Plugin:
        @hookimpl
        def hvae_register_converters(self, register):
            register(converter_class(converter_name))

    return Plugin()


def test_two_plugins_registering_one_name_is_an_error_naming_both(hvae_plugin):
    hvae_plugin(make_converter_plugin("twin"), name="twin-a")
    with pytest.raises(PluginError, match=r"converter 'twin' is registered twice: by plugin 'twin-a'.*"
                                          r"by plugin 'twin-b'"):
        hvae_plugin(make_converter_plugin("twin"), name="twin-b")
    assert "twin" in registry().names("converters")


def test_a_plugin_taking_a_builtin_name_is_an_error_naming_the_builtin_distribution(hvae_plugin):
    with pytest.raises(PluginError, match=r"'drums' is registered twice: by plugin 'converters' "
                                          r"\(hvae-converters\) and by plugin 'my-drums'"):
        hvae_plugin(make_converter_plugin("drums"), name="my-drums")
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0 and "my-drums" not in result.output


def test_hvae_plugins_reports_a_duplicate_name_in_one_line(hvae_plugin):
    from hvae import plugins

    hvae_plugin(make_converter_plugin("twin"), name="twin-a")
    plugins.register_plugin(make_converter_plugin("twin"), name="twin-b")
    try:
        result = CliRunner().invoke(main, ["plugins"])
    finally:
        plugins.unregister_plugin("twin-b")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "'twin-a'" in result.output and "'twin-b'" in result.output


# --- broken plugins, in-process -------------------------------------------------------------------------------

class WrongSignature:
    @hookimpl
    def hvae_register_converters(self, reg):
        pass


class MisspeltHook:
    @hookimpl
    def hvae_register_convertors(self, register):
        raise AssertionError("never called")


class HalfWorking:
    @hookimpl
    def hvae_register_converters(self, register):
        register(converter_class("half-working"))

    @hookimpl
    def hvae_register_losses(self, register):
        raise RuntimeError("cannot find my weights")


@pytest.mark.parametrize("plugin, reason", [
    (WrongSignature(), r"rejected: .*\{'reg'\} are declared in the hookimpl but can not be found in the hookspec"),
    (MisspeltHook(), r"implements unknown hook 'hvae_register_convertors'"),
], ids=["wrong-signature", "unknown-hook"])
def test_a_broken_in_process_plugin_is_reported_under_failed_and_the_rest_works(hvae_plugin, plugin, reason):
    reg = hvae_plugin(plugin, name="broken")
    failures = [f for f in reg.failures if f.plugin == "broken"]
    assert len(failures) == 1 and re.search(reason, failures[0].reason)
    assert {"drums", "groove", "melody"} <= set(reg.names("converters")) and reg.names("losses")
    assert hvae.get_converter("drums", slice_bars=4).steps == 64
    report = plugins_json()
    assert [f["plugin"] for f in report["failed"]] == ["broken"]
    assert "broken" not in [p["name"] for p in report["plugins"]]
    text = CliRunner().invoke(main, ["plugins"]).output
    assert text.splitlines()[-2:] == ["failed:", f"  broken (?): {failures[0].reason}"]


def test_a_hook_that_raises_is_reported_and_the_plugins_other_hooks_still_work(hvae_plugin):
    reg = hvae_plugin(HalfWorking(), name="half")
    assert [f.reason for f in reg.failures if f.plugin == "half"] == [
        "losses hook failed: RuntimeError('cannot find my weights')"]
    assert "half-working" in reg.names("converters")
    report = plugins_json()
    assert [p["converters"] for p in report["plugins"] if p["name"] == "half"] == [["half-working"]]
    assert [f["plugin"] for f in report["failed"]] == ["half"]


def test_registered_plugin_is_gone_after_the_block():
    from hvae.testing import registered_plugin

    with registered_plugin(make_converter_plugin("temporary"), name="temporary") as reg:
        assert "temporary" in reg.names("converters")
    assert "temporary" not in registry().names("converters")


# --- broken plugins, installed --------------------------------------------------------------------------------

BROKEN_MODULES = {
    "broken_import": "import hvae_no_such_dependency\n",
    "bad_signature": """
        from hvae.hookspecs import hookimpl

        @hookimpl
        def hvae_register_converters(reg):
            pass
    """,
    "misspelt_hook": """
        from hvae.hookspecs import hookimpl

        @hookimpl
        def hvae_register_convertors(register):
            pass
    """,
}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    """A folder holding the installed distribution 'hvae-broken-plugins' with three broken entry points."""
    source = tmp_path_factory.mktemp("broken-src")
    for module, code in BROKEN_MODULES.items():
        (source / f"{module}.py").write_text(textwrap.dedent(code))
    entry_points = "\n".join(f'{m.replace("_", "-")} = "{m}"' for m in BROKEN_MODULES)
    (source / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "hvae-broken-plugins"
        version = "0.0.1"

        [project.entry-points.hvae]
        """) + entry_points + f"\n\n[tool.setuptools]\npy-modules = {json.dumps(list(BROKEN_MODULES))}\n")
    site = tmp_path_factory.mktemp("broken-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True)
    return site


def run_hvae(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([HVAE, *args], env=env, capture_output=True, text=True, timeout=300)


def test_installed_broken_plugins_are_reported_under_failed(broken_site):
    result = run_hvae(["plugins", "--json"], broken_site)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    failed = {f["plugin"]: f for f in report["failed"]}
    assert set(failed) == {"broken-import", "bad-signature", "misspelt-hook"}
    assert {f["distribution"] for f in failed.values()} == {"hvae-broken-plugins"}
    assert failed["broken-import"]["reason"] == ("import failed: ModuleNotFoundError: "
                                                 "No module named 'hvae_no_such_dependency'")
    assert "{'reg'}" in failed["bad-signature"]["reason"]
    assert failed["misspelt-hook"]["reason"] == "implements unknown hook 'hvae_register_convertors'"
    listed = {p["distribution"] for p in report["plugins"]}
    assert set(BUILTIN.values()) <= listed and "hvae-broken-plugins" not in listed


def test_with_broken_plugins_installed_everything_else_still_works(broken_site, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for source in sorted(DEMO_DIR.rglob("*.mid"))[:3]:
        shutil.copy(source, data / source.name)
    text = run_hvae(["plugins"], broken_site)
    assert "converters: drums, groove, melody" in text.stdout
    assert "  broken-import (hvae-broken-plugins): import failed" in text.stdout
    result = run_hvae(["data", "prepare", "-c", "drums", "-o", "slice_bars=4", "--data", str(data),
                       "--out", str(tmp_path / "out"), "--no-progress"], broken_site)
    assert result.returncode == 0, result.stderr
    assert "Converted 3 files" in result.stdout


# --- the core stays plugin-free, and every hook is documented -------------------------------------------------

def plugin_imports(path: Path) -> list[str]:
    """Each place in ``path`` that imports a plugin package, as 'file:line name'."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        for name in names:
            if name.split(".")[0] in PLUGIN_PACKAGES:
                found.append(f"{path.name}:{node.lineno} {name}")
    return found


def test_the_core_package_imports_no_plugin_package():
    core_files = sorted((REPO / "core" / "hvae").rglob("*.py"))
    assert len(core_files) > 10
    assert [hit for path in core_files for hit in plugin_imports(path)] == []


def test_the_import_scan_finds_every_way_of_importing_a_plugin(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(textwrap.dedent("""\
        import hvae_converters
        import os, hvae_losses.categorical
        from hvae_decoders.flat import FlatDecoder
        import importlib
        importlib.import_module("hvae_converters.drums")
        __import__("hvae_losses")
        from hvae.data import prepare_dataset
        from . import hvae_converters_lookalike
    """))
    assert plugin_imports(sneaky) == ["sneaky.py:1 hvae_converters", "sneaky.py:2 hvae_losses.categorical",
                                      "sneaky.py:3 hvae_decoders.flat", "sneaky.py:5 hvae_converters.drums",
                                      "sneaky.py:6 hvae_losses"]


def test_importing_the_core_and_its_command_line_loads_no_plugin():
    code = ("import sys, hvae, hvae.data, hvae.cli, hvae.testing; "
            f"print([m for m in sys.modules if m.split('.')[0] in {PLUGIN_PACKAGES!r}])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_hook_is_documented_in_the_readme():
    hooks = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "hvae_spec"))
    assert hooks == ["hvae_register_converters", "hvae_register_decoders", "hvae_register_encoders",
                     "hvae_register_losses"]
    readme = REPO / "README.md"
    assert readme.is_file(), "README.md is missing: it must document every plugin hook ('Writing a plugin')"
    text = readme.read_text(encoding="utf-8")
    assert [hook for hook in hooks if hook not in text] == []


# --- a plugin's bug is the plugin's, not a checkpoint's ------------------------------------------------------------

class BuggyConverter:
    @hookimpl
    def hvae_register_converters(self, register):
        def __init__(self, options=None, **overrides):
            self.options.slice_bars  # a bug: options is set by the base class, which this never calls

        register(type("Buggy", (DrumsConverter,), {"name": "buggy", "__init__": __init__}))


def test_a_plugin_whose_code_fails_is_named_not_called_a_misfit(hvae_plugin):
    from hvae.plugins import make_converter

    hvae_plugin(BuggyConverter(), name="buggy-plugin")
    with pytest.raises(PluginError, match=r"The converter 'buggy' of plugin 'buggy-plugin' \(in-process\) failed: "
                                          r"AttributeError: .*a bug in the plugin"):
        make_converter("buggy")


def test_a_checkpoint_whose_plugin_fails_names_the_plugin(hvae_plugin, trained_drums, tmp_path):
    from hvae import manifest
    from hvae.checkpoint import MANIFEST, find_checkpoint
    from hvae.rundir import open_run

    copy = Path(shutil.copytree(find_checkpoint(trained_drums), tmp_path / "checkpoints" / "step-00000040"))
    written = json.loads((copy / MANIFEST).read_text())
    written["run"]["converter"] = "buggy"
    manifest.commit(copy, MANIFEST, written, indent=2)
    hvae_plugin(BuggyConverter(), name="buggy-plugin")
    with pytest.raises(PluginError, match="plugin 'buggy-plugin'"):
        open_run(copy)
