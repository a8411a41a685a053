"""Running the ``hvae`` command line in-process, as the tests of several commands do."""

from __future__ import annotations

from click.testing import CliRunner, Result

from hvae.cli import main


def invoke(*args) -> Result:
    """``hvae ARGS...`` (each argument passed through ``str``); stdout and stderr kept apart."""
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    """The single ``Error: ...`` line of a command that failed with exit status 1."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]
