"""The command line's manners: help that explains, and one-line messages (no tracebacks) for mistakes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import hvae
from hvae.cli import main
from hvae.plugins import registry

HVAE = str(Path(sys.executable).parent / "hvae")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result) -> str:
    """The single line a user mistake prints; fails when there is more (a traceback, a usage dump)."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_help_lists_the_command_groups():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "plugins" in result.output and "data" in result.output


def test_help_lists_every_command_without_loading_torch_or_the_plugins():
    script = ("import sys; from hvae.cli import main; main(['--help'], standalone_mode=False); "
              "print('LOADED:', sorted(m for m in ('torch', 'hvae_decoders', 'hvae.interfaces') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "LOADED: []" in done.stdout
    listed = done.stdout.split("Commands:")[1]
    assert all(f"  {name} " in listed for name in ("compare", "data", "evaluate", "humanize", "interpolate",
                                                   "plugins", "reconstruct", "report", "run", "sample", "train"))


WORKFLOW = ["models", "plugins", "presets", "data", "train", "run", "import", "sample", "reconstruct", "interpolate", "mean",
            "similar", "humanize", "drumify", "groove-transfer", "attributes", "transform", "evaluate", "report", "compare", "export"]


def listing() -> list[tuple[str, str]]:
    """(command, its description with the wrapping undone) in the order of hvae --help."""
    rows: list[list[str]] = []
    for line in invoke("--help").output.split("Commands:")[1].splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            name, _, text = line.strip().partition(" ")
            rows.append([name, text.strip()])
        elif line.strip():
            rows[-1][1] += " " + line.strip()
    return [(name, text) for name, text in rows]


def test_help_lists_the_commands_in_the_order_of_a_session():
    assert [name for name, _ in listing()] == WORKFLOW


def test_help_gives_each_commands_whole_first_sentence():
    from hvae.cli import COMMANDS

    for name, text in listing():
        assert text == COMMANDS[name][1] and "..." not in text, name


def test_the_listing_says_what_each_command_says_of_itself():
    from hvae.cli import COMMANDS

    ctx = click.Context(main)
    for name, (_module, sentence) in COMMANDS.items():
        assert main.get_command(ctx, name).get_short_help_str(limit=200) == sentence, name
    assert set(main.commands) == set(COMMANDS)  # every command is in the table


def test_version_is_the_packages():
    result = invoke("--version")
    assert result.exit_code == 0 and hvae.__version__ in result.output


def test_data_help_shows_an_example():
    result = invoke("data", "--help")
    assert result.exit_code == 0
    assert "hvae data prepare --converter drums -o slice_bars=4" in result.output
    assert "prepare" in result.output and "info" in result.output


def test_prepare_help_explains_splits_cache_skipping_and_exit_status():
    text = " ".join(invoke("data", "prepare", "--help").output.split())
    for phrase in ("info.csv", "maestro-v3.0.0.csv", "hash of their path", "80% train", "skipped and listed",
                   "reuses the cache", "status 1 when no file gave a window", "'hvae plugins' lists them",
                   "-o slice_bars=4", "Default: one per CPU", "Default: the bundled 64-file Groove MIDI Dataset",
                   "HVAE_CACHE"):
        assert phrase in text, phrase


def test_an_unknown_converter_is_one_line_listing_the_installed_ones():
    line = one_line_error(invoke("data", "prepare", "--converter", "drumz"))
    installed = ", ".join(registry().names("converters"))
    assert line == f"Error: Unknown converter 'drumz'. Installed: {installed}. Run 'hvae plugins'."


def test_an_unknown_option_is_one_line_naming_the_valid_ones():
    line = one_line_error(invoke("data", "prepare", "-c", "drums", "-o", "slice_barz=4"))
    valid = [f.name for f in dataclasses.fields(hvae.get_converter("drums").Options)]
    assert line == f"Error: Unknown option 'slice_barz' for converter 'drums'. Valid: {', '.join(valid)}."


@pytest.mark.parametrize("option, message", [
    ("slice_bars", "Error: Option 'slice_bars' is not key=value"),
    ("slice_bars=four", "Error: Option slice_bars: cannot read 'four'"),
    ("slice_bars=0", "Error: Option slice_bars of converter 'drums' must be at least 1, not 0."),
])
def test_a_bad_option_value_is_one_line(option, message):
    assert one_line_error(invoke("data", "prepare", "-c", "drums", "-o", option)).startswith(message)


def test_info_on_a_folder_that_is_no_cache_is_one_line(tmp_path):
    line = one_line_error(invoke("data", "info", str(tmp_path)))
    assert line == (f"Error: {tmp_path} is not an hvae data cache (no manifest.json). "
                    f"Create one with 'hvae data prepare'.")


def test_a_missing_data_folder_is_a_usage_error(tmp_path):
    result = invoke("data", "prepare", "-c", "drums", "--data", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert f"Directory '{tmp_path / 'nowhere'}' does not exist." in result.output


def test_the_installed_command_prints_no_traceback_for_a_mistake():
    result = subprocess.run([HVAE, "data", "prepare", "--converter", "drumz"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: Unknown converter 'drumz'.") and result.stderr.count("\n") == 1


def test_device_mps_without_apple_silicon_is_a_one_line_error(trained_drums, tmp_path):
    result = invoke("sample", str(trained_drums), "--device", "mps", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: Device 'mps' (Apple silicon's GPU) was asked for, but this PyTorch "
                                     "build sees no MPS device; use cpu or auto.")


def test_device_mps_is_the_mps_device_where_torch_reports_it(monkeypatch):
    import torch

    from hvae.device import resolve_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")
