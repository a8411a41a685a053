"""The ``hvae`` command line. One module per command group; this one wires them together."""

from __future__ import annotations

import importlib
import os

import click

from hvae import cpushare
from hvae.errors import HvaeError, OutputExistsError


INTERRUPTED = 130  # exit status after Ctrl-C, as shells give a command killed by SIGINT
ARGS = "hvae.args"  # key of the command line's arguments in click's context meta (to start it again)

# Each command: the module (hvae.cli.<module>) whose register() adds it, and the first sentence of
# its help, in the order of a session's work (what is installed, data, training, using a model,
# measuring it). `hvae --help` lists them from here, so it loads neither torch nor the plugins (a
# test checks these sentences against the commands' own); a command's module loads when it is run.
COMMANDS = {
    "models": ("models", "List the models in the box: trained on the Groove MIDI Dataset, ready to use by name."),
    "plugins": ("plugins", "List installed plugin distributions, their versions and the names each registers."),
    "presets": ("presets", "List the presets: converter, decoder, sizes, parameters and where each comes from."),
    "data": ("data", "Prepare MIDI data sets as cached training windows, and inspect prepared caches."),
    "train": ("train", "Train a model; write checkpoints and metrics.jsonl into a run directory."),
    "run": ("train", "Prepare the data, train, and sample MIDI: the whole pipeline in one command."),
    "import": ("magenta", "Import a Magenta checkpoint (TensorFlow or magenta.js) as an hvae run directory."),
    "sample": ("train", "Draw sequences from a trained model and write them as MIDI files; print their paths."),
    "reconstruct": ("latent", "Encode MIDI files and decode them again: what the model keeps of each."),
    "interpolate": ("latent", "Decode the way from one MIDI file to another, or the grid between four, through "
                              "the latent space."),
    "mean": ("latent", "Decode the midpoint between two MIDI files in the latent space."),
    "similar": ("latent", "Decode variations of a MIDI file: its latent code blended with draws from the prior."),
    "humanize": ("latent", "Turn quantised, flat-velocity drum parts into expressive ones."),
    "drumify": ("latent", "Turn any rhythm (taps on one key, a bass line, a melody) into a drum groove."),
    "groove-transfer": ("latent", "Play one file's drum hits with another file's feel (velocities and timing)."),
    "attributes": ("attributes", "Find attribute vectors: latent directions that make a window denser, more "
                                 "syncopated or busier on one drum."),
    "transform": ("attributes", "Change a MIDI file's attributes with the model's attribute vectors."),
    "evaluate": ("evaluate", "Reconstruction metrics and sample quality of a trained model on a data split."),
    "report": ("report", "Write a run's HTML report into RUN_DIR/report/ and print the page's path."),
    "compare": ("compare", "Train combinations of converter, decoder and loss on the same data and budget; "
                            "compare them."),
    "export": ("magenta", "Export a trained model as a magenta.js checkpoint folder for web apps."),
}
FULL_SENTENCE = 1_000  # characters: no first sentence is cut short in the listing


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: the path(s) it concerns and the system's reason."""
    where = " -> ".join(os.fsdecode(name) if isinstance(name, bytes) else str(name)
                        for name in (exc.filename, exc.filename2) if name is not None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {reason}" if where else reason


class HvaeGroup(click.Group):
    """Loads each command's module when the command is used, and turns hvae's own errors into
    one-line messages instead of tracebacks."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGS] = list(args)
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """hvae's commands in the order of a session's work, then any others, sorted."""
        return list(COMMANDS) + sorted(set(super().list_commands(ctx)) - set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            importlib.import_module(f"hvae.cli.{COMMANDS[name][0]}").register(self)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with the whole first sentence of its help, wrapped."""
        rows = []
        for name in self.list_commands(ctx):
            if name in COMMANDS:
                rows.append((name, COMMANDS[name][1]))
            else:
                rows.append((name, self.commands[name].get_short_help_str(FULL_SENTENCE)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        cpushare.choose_for_process()  # before a command loads PyTorch: threads for the cores left free
        try:
            return super().invoke(ctx)
        except OutputExistsError as exc:  # the library says out= and overwrite=True; here they are options
            raise click.ClickException(exc.worded("--out", "--force")) from None
        except HvaeError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:  # Ctrl-C anywhere (start-up, data, sampling): the shell's status for SIGINT
            raise click.exceptions.Exit(INTERRUPTED) from None
        except OSError as exc:  # disk full, read-only folder, name too long, ...: what failed, and where
            raise click.ClickException(os_error_line(exc)) from None
        except MemoryError:
            raise click.ClickException("Out of memory: lower the batch size, the model's sizes or the number of "
                                       "workers (-j).") from None
        except RuntimeError as exc:
            if type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(exc):
                raise click.ClickException(f"Out of memory ({str(exc).splitlines()[0][:120]}): lower the batch "
                                           f"size or the model's sizes.") from None
            from hvae.distributed import lost_peer  # loads torch, which raised exc: already loaded

            if lost_peer(exc):
                raise click.ClickException("Another process of this run stopped (its own message says why), so "
                                           "this one stops too; resume the run once that is fixed.") from None
            raise


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
