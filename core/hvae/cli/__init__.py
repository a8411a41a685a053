"""The ``hvae`` command line. One module per command group; this one wires them together."""

from __future__ import annotations

import sys

import click

from hvae.errors import HvaeError


ARGS = "hvae.args"  # key of the command line's arguments in click's context meta (to start it again)


class HvaeGroup(click.Group):
    """Turns hvae's own errors into one-line messages instead of tracebacks."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGS] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HvaeError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=HvaeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hvae")
def main() -> None:
    """hvae: train MusicVAE-family models on MIDI and write new MIDI.

    \b
    Typical session:
      hvae plugins                                   # what is installed
      hvae data prepare --converter drums --data DIR --out cache/
      hvae run --converter drums --decoder hierarchical --loss categorical
    """


def _register_commands() -> None:
    from hvae.cli import plugins as plugins_cmd

    main.add_command(plugins_cmd.plugins)
    for module_name in ("data", "train", "evaluate", "latent"):
        try:
            module = __import__(f"hvae.cli.{module_name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"hvae.cli.{module_name}":
                raise
            continue
        module.register(main)


_register_commands()

if __name__ == "__main__":
    sys.exit(main())
