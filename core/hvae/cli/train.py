"""``hvae train``, ``hvae sample`` and ``hvae run``: train a model, write MIDI from it, or both at once."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click
from tqdm import tqdm

from hvae import distributed
from hvae.cli import ARGS
from hvae.cli.params import CHORDS, MINUTES, QPM, RUN, SEED, TEMPERATURE, THREADS
from hvae.generation import sample_checkpoint, takes_chords
from hvae.model import trainable_parameters
from hvae.music import DEFAULT_QPM
from hvae.presets import list_presets
from hvae.pretrained import shipped_model
from hvae.report.audio import render_previews
from hvae.rundir import fork_run
from hvae.safefiles import sigterm_as_exit
from hvae.session import DEFAULT_PRESET, NO_TRANSPOSITION, RESUMABLE, WHAT_TO_TRAIN, Session, TrainRequest, \
    default_run_dir
from hvae.training import TrainResult

MAX_SAMPLES = 10_000  # files of one sample call: a few minutes at ~30 ms a file (streamed, so memory stays flat)
TRAIN_FLAGS = ("steps", "minutes", "batch_size", "seed", "device", "amp", "threads", "log_every", "eval_every",
               "checkpoint_every", "workers", "transpose_range", "tensorboard")  # TrainConfig fields with an option
# What --resume takes besides RESUMABLE: how to run it, and where (--out, --data: a new run forked from it)
WITH_RESUME = ("nproc", "progress", "out_dir", "data_dir")


def _transpose(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """``--transpose``: "LOW,HIGH" (semitones), "N" for -N to N, "0" for none."""
    if value is None:
        return None
    try:
        numbers = tuple(int(part) for part in value.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) == 1 and numbers[0] >= 0:
        return NO_TRANSPOSITION if numbers[0] == 0 else (-numbers[0], numbers[0])
    if len(numbers) == 2 and numbers[0] <= numbers[1]:
        return numbers
    raise click.BadParameter(f"{value!r}: give LOW,HIGH in semitones (e.g. -5,5), N for -N to N, or 0 for none.")


REDRAW = click.option(
    "--redraw/--no-redraw", default=True, show_default=True,
    help="Draw a drum sample again while its hits per bar lie outside the 5th to 95th percentile of the "
         "training windows' (noise, or next to silence), and say how many were; --no-redraw keeps every draw.")


def register(main: click.Group) -> None:
    """Add ``train``, ``sample`` and ``run`` to the ``hvae`` command line."""
    main.add_command(train)
    main.add_command(sample)
    main.add_command(run)


def _config_options(func: Callable) -> Callable:
    """The options ``train`` and ``run`` share: what to train, on what, and how."""
    presets = ", ".join(list_presets())
    options = [
        click.option("--preset", "-p", metavar="NAME", default=None,
                     help=f"Start from this preset; the options below override it. Default: {DEFAULT_PRESET}. "
                          f"Presets: {presets}."),
        click.option("--converter", "-c", metavar="NAME", default=None,
                     help="Converter (MIDI <-> tensors): drums, groove, melody or a plugin's. Default: the preset's."),
        click.option("--encoder", metavar="NAME", default=None,
                     help="Encoder: bidirectional, hierarchical (bars encoded one by one, then in order) or a "
                          "plugin's. Default: the preset's; a new encoder keeps the preset's layer sizes."),
        click.option("--decoder", metavar="NAME", default=None,
                     help="Decoder: flat, hierarchical, groove or a plugin's. Default: the preset's; a new decoder "
                          "keeps the preset's layer sizes."),
        click.option("--loss", metavar="NAME", default=None,
                     help="Loss (output distribution): categorical, groove, groove-gated, bernoulli or a plugin's. "
                          "Default: the preset's. 'hvae plugins' lists what is installed."),
        click.option("--option", "-o", "converter_options", multiple=True, metavar="KEY=VALUE",
                     help="A converter option by the reference's name (-o slice_bars=2); repeat for more."),
        click.option("--model-option", "-m", "model_options", multiple=True, metavar="KEY=VALUE",
                     help="A model option: a ModelConfig field (-m z_size=64 -m free_bits=0) or a component's "
                          "(-m decoder.rnn_sizes=128,128 -m encoder.rnn_sizes=256); repeat for more."),
        click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     default=None,
                     help="Folder of MIDI files (searched recursively; splits from its info.csv, else by path "
                          "hash). Default: the bundled 64-file Groove MIDI Dataset demo subset."),
        click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder of the prepared windows. Default: one per data folder, converter and options "
                          "under $HVAE_CACHE (else ~/.cache/hvae); reused when up to date."),
        click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Run directory to create (config.json, metrics.jsonl, checkpoints/, samples/). "
                          "Default: runs/<name>-<date-time>."),
        click.option("--steps", type=click.IntRange(min=1), default=None,
                     help="Training steps in total. Default: the preset's."),
        click.option("--minutes", type=MINUTES, default=None,
                     help="Wall-clock budget of this training call: at the deadline the run stops after the step "
                          "under way, validates and writes a checkpoint (exit 0; --resume goes on, with a new "
                          "budget). Default: none, train to --steps."),
        click.option("--batch-size", "-b", type=click.IntRange(min=1), default=None,
                     help="Examples per training step. Default: the preset's."),
        click.option("--seed", type=SEED, default=None,
                     help="Seed of initialisation, batch order, latent noise and dropout. Default: 0."),
        click.option("--log-every", type=click.IntRange(min=1), default=None,
                     help="Steps between lines in metrics.jsonl. Default: 10."),
        click.option("--eval-every", type=click.IntRange(min=0), default=None,
                     help="Steps between validation passes (always one at the end; 0: only then). Default: 500."),
        click.option("--checkpoint-every", type=click.IntRange(min=1), default=None,
                     help="Steps between checkpoints (always one at the end). Default: 500."),
        click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
                     help="Processes converting MIDI when the data is not cached yet. Default: one per CPU."),
        click.option("--transpose", "transpose_range", metavar="RANGE", callback=_transpose, default=None,
                     help="Augment: move each training window by a random number of semitones in LOW,HIGH "
                          "(e.g. -5,5; N means -N,N; 0: off). Needs a converter that can transpose (melody). "
                          "Default: the preset's (the reference's -5,5 for its 2-bar melody models)."),
        click.option("--tensorboard/--no-tensorboard", default=None,
                     help="Also log metrics.jsonl's scalars for TensorBoard, into RUN/tensorboard/ (needs the "
                          "tensorboard package: pip install tensorboard). Default: off."),
        click.option("--force", is_flag=True,
                     help="Train a converter and loss that do not fit (e.g. softmax cross-entropy on groove "
                          "tensors) instead of refusing: to reproduce such a failure on purpose."),
    ]
    func = _device_options(func)
    for option in reversed(options):
        func = option(func)
    return func


def _device_options(func: Callable) -> Callable:
    func = click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
                        help="Train in N processes on this machine (one per GPU, or CPU processes sharing the "
                             "cores): starts torchrun with this command. The batch size must divide by N. "
                             "Several machines: see docs/distributed.md.")(func)
    func = click.option("--progress/--no-progress", default=True, show_default=True,
                        help="Show progress bars on stderr.")(func)
    func = click.option("--threads", type=THREADS, default=None,
                        help="CPU threads for training. Default: one per core that other processes leave free, "
                             "looked at again every few seconds (on an idle machine, one per core).")(func)
    func = click.option("--amp/--no-amp", default=None,
                        help="Mixed precision (bfloat16 autocast; float16 on GPUs without bfloat16). "
                             "Default: off.")(func)
    return click.option("--device", "-d", metavar="DEVICE", default=None,
                        help="auto (CUDA when there is one), cpu, cuda, cuda:N or mps (Apple silicon). Default: auto.")(func)


def _request(params: dict[str, Any], *, resume: Path | None = None, earlier: Path | None = None) -> TrainRequest:
    """The training call the command line asks for: the resume of the run in ``resume``, a new run with the
    configuration of the ``earlier`` one, or else a new run from a preset and the options given."""
    train = {k: params[k] for k in TRAIN_FLAGS}
    if resume is not None:
        return TrainRequest(resume=resume, train={k: train[k] for k in RESUMABLE})
    where = {k: params[k] for k in ("data_dir", "cache_dir", "out_dir")}
    if earlier is not None:
        return TrainRequest.from_earlier(earlier, train=train, **where)
    return TrainRequest(train=train, **where, **{k: params[k] for k in WHAT_TO_TRAIN})


def _describe(session: Session) -> None:
    trainer = session.trainer
    if not trainer.world.main:
        return
    c, m = trainer.config, trainer.model.config
    parameters = sum(p.numel() for p in trainable_parameters(trainer.model))
    click.echo(f"Run:    {trainer.run_dir}  (name {c.name}{', preset ' + c.preset if c.preset else ''})")
    click.echo(f"Model:  {c.converter} -> {m.encoder} encoder -> {m.decoder} decoder -> {m.loss} loss, "
               f"z {m.z_size}, {parameters:,} parameters{'  [FORCED: incompatible loss]' if c.force else ''}")
    click.echo(f"Data:   {len(trainer.train_set):,} training and {len(trainer.validation_set):,} validation "
               f"windows from {c.data_dir}")
    processes = trainer.world.size
    shared = f" ({c.train.batch_size // processes} in each of {processes} processes)" if processes > 1 else ""
    click.echo(f"Train:  steps {trainer.step} -> {c.train.steps}, batch {c.train.batch_size}{shared}, "
               f"seed {c.train.seed}, device {trainer.device}{', amp' if c.train.amp else ''}")
    if c.train.transpose_range:
        low, high = c.train.transpose_range
        click.echo(f"Augment: each training window transposed by {low:+d} to {high:+d} semitones at random")
    if c.train.tensorboard:
        click.echo(f"Log:    {trainer.dir.tensorboard} (see it with: tensorboard --logdir {trainer.run_dir})")
    for note in session.notes:
        click.echo(f"Note:   {note}", err=True)


def _report(result: TrainResult, main: bool) -> None:
    """Summarise a training call (on rank 0 alone); exit with the shell's status for the signal (130 for
    Ctrl-C) if one stopped it (on every rank)."""
    if main:
        _summarise(result)
    if result.interrupted:
        raise SystemExit(128 + signal.Signals[result.interrupted].value)


def _summarise(result: TrainResult) -> None:
    if result.first and result.last:
        losses = f"loss {result.last['loss']:.4g}"
        if result.first["step"] != result.last["step"]:
            losses = f"loss {result.first['loss']:.4g} (step {result.first['step']}) -> {result.last['loss']:.4g}"
        click.echo(f"Trained to step {result.step} in {result.seconds:.1f} s: {losses}, "
                   f"KL {result.last['kl_bits']:.3g} bits")
    if result.validation:
        extra = "".join(f", {k} {result.validation[k]:.3g}" for k in ("accuracy", "hit_f1") if k in result.validation)
        click.echo(f"Validation: loss {result.validation['loss']:.4g}{extra}")
    click.echo(f"Checkpoint: {result.checkpoint}")
    if result.interrupted:
        click.echo(f"Stopped by {result.interrupted} at step {result.step}; continue with: "
                   f"hvae train --resume {result.run_dir}", err=True)
    elif result.out_of_time:
        click.echo(f"Stopped at the time budget (--minutes) at step {result.step}, before the last step; "
                   f"continue with: hvae train --resume {result.run_dir}", err=True)


def _train(ctx: click.Context, request: TrainRequest, params: dict[str, Any]) -> tuple[TrainResult, Session]:
    """What ``train`` and ``run`` do: in N processes with --nproc, say what is trained, train it. Returns how
    it ended and the session, left (its lock released, the process group too)."""
    _in_processes(ctx, params, request)
    with Session(request, progress=params["progress"]) as session:
        _describe(session)
        result = session.train()
    return result, session


def _in_processes(ctx: click.Context, params: dict[str, Any], request: TrainRequest) -> None:
    """With --nproc N, start this command again in N processes under torchrun (see hvae.distributed.launch),
    without --nproc: torchrun's own parser would take it for an abbreviation of its --nproc-per-node."""
    if params["nproc"] is None:
        return
    batch_size = request.resolve().config.train.batch_size  # refused here, before any process starts
    distributed.World(size=params["nproc"]).share(batch_size)  # a batch that does not divide: say so once
    args, given = [], iter(ctx.meta[ARGS])
    for arg in given:
        if arg == "--nproc":
            next(given)
        elif not arg.startswith("--nproc="):
            args.append(arg)
    distributed.launch(params["nproc"], args)


def _resume_where(source: Path, params: dict[str, Any]) -> Path:
    """The run directory ``--resume`` trains in: ``source`` itself, or with --out (always for a model in the
    box) a new run directory forked from it (on --data when given)."""
    shipped = shipped_model(source) if not source.exists() else None
    if params["out_dir"] is None and shipped is None:
        if params["data_dir"] is not None:
            raise click.UsageError("--data with --resume trains on other data: give --out too, for the new run.")
        return source
    if params["nproc"] is not None:
        raise click.UsageError(f"--nproc cannot start a new run from --resume: make it first (hvae train --resume "
                               f"{source} --out DIR --steps 1), then hvae train --resume DIR --nproc N.")
    target = params["out_dir"] or default_run_dir(shipped.name if shipped else source.name)
    forked = fork_run(source, target, params["data_dir"])
    click.echo(f"New run {forked}: continues {shipped.name if shipped else source} from its newest checkpoint.")
    return forked


def _given(ctx: click.Context, params: dict[str, Any], names: Sequence[str]) -> list[str]:
    """The options among the parameters ``names`` given on the command line, by their long names."""
    long_names = {p.name: next(o for o in p.opts if o.startswith("--")) for p in ctx.command.params}
    return sorted(long_names[k] for k in names if k in params and
                  ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT)


@click.command()
@click.option("--resume", "resume_dir", type=RUN, default=None,
              help="Continue the run in this directory from its newest checkpoint, exactly as if it had not "
                   f"stopped. Only {', '.join('--' + name for name in RESUMABLE)}, --nproc and --progress may "
                   "be given with it, and --out (with --data) to continue in a new run directory instead, "
                   "leaving this one as it is: that is how a model in the box is fine-tuned (hvae models).")
@click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path), default=None,
              help="Start a new run with an earlier run's settings: its config.json (or its directory). "
                   "Training options (--steps, --seed, ...), --data, --cache and --out may be given on top; "
                   "what is trained (--preset, --converter, -o, -m, ...) comes from the file.")
@_config_options
@click.pass_context
def train(ctx: click.Context, resume_dir: Path | None, config_file: Path | None, **params: Any) -> None:
    """Train a model; write checkpoints and metrics.jsonl into a run directory.

    The data is prepared first (or found in its cache). Ctrl-C finishes the step under way,
    writes a checkpoint and stops; --resume continues from it. A loss that is not finite stops
    training and leaves the last checkpoint intact.

    Under torchrun (or with --nproc N) each process trains on its share of every batch and
    rank 0 writes the run directory; a run resumes with any number of processes.

    \b
    Examples:
      hvae train                                   # the demo preset on the bundled demo data
      hvae train --preset hier-drums-4bar --data groove/ --out runs/hier-drums
      hvae train --resume runs/hier-drums --steps 60000
      hvae train --config runs/hier-drums/config.json --seed 1 --out runs/hier-drums-seed1
      hvae train --nproc 4 --preset hier-drums-4bar --data groove/   # 4 processes (GPUs) on this machine
    """
    if resume_dir is not None and config_file is not None:
        raise click.UsageError("--resume continues a run and --config starts a new one: give one of them.")
    if resume_dir is not None:
        given = _given(ctx, params, [k for k in params if k not in RESUMABLE + WITH_RESUME])
        if given:
            raise click.UsageError(f"--resume continues a run as it was configured; {', '.join(given)} "
                                   f"cannot be given with it.")
        request = _request(params, resume=_resume_where(resume_dir, params))
    elif config_file is not None:
        given = _given(ctx, params, WHAT_TO_TRAIN)
        if given:
            raise click.UsageError(f"--config trains what the earlier run trained; {', '.join(given)} "
                                   f"cannot be given with it.")
        request = _request(params, earlier=config_file)
    else:
        request = _request(params)
    result, session = _train(ctx, request, params)
    _report(result, session.world.main)


@click.command()
@click.argument("checkpoint", type=RUN)
@click.option("--num-samples", "-n", type=click.IntRange(min=1, max=MAX_SAMPLES), default=5, show_default=True,
              help=f"How many sequences to draw (one MIDI file each), at most {MAX_SAMPLES:,}: a few minutes at "
                   f"~30 ms a file (call again for more: the names never collide). Files are written as they are "
                   f"drawn, 256 at a time, with progress on a terminal; an interrupted call keeps them and says how "
                   f"many.")
@click.option("--temperature", "-t", type=TEMPERATURE, default=0.5, show_default=True,
              help="Sampling temperature: below 1 is more conservative, above 1 more adventurous.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the MIDI files. Default: the run directory's samples/.")
@click.option("--seed", type=SEED, default=None,
              help="Seed of the latent vectors and the draws; the same seed gives the same files. Default: random.")
@click.option("--qpm", type=QPM, default=DEFAULT_QPM, show_default=True,
              help="Tempo of the written MIDI, in quarter notes per minute.")
@click.option("--device", "-d", metavar="DEVICE", default="auto", show_default=True,
              help="auto (CUDA when there is one), cpu, cuda, cuda:N or mps (Apple silicon).")
@click.option("--amp/--no-amp", default=False, show_default=True,
              help="Decode in mixed precision (bfloat16; float16 on GPUs without it): about twice as fast "
                   "for large models on CPU; the draws differ from float32's by rounding.")
@click.option("--name", metavar="NAME", default=None,
              help="What the files are named after, instead of the run's name (e.g. --name funk-t0.8-s7 to "
                   "keep the temperature and seed in the names).")
@REDRAW
@click.option("--wav", is_flag=True,
              help="Also write a WAV preview beside each MIDI file, rendered by fluidsynth with a General MIDI "
                   "soundfont (as hvae report does); where they are not installed, a line says how to install "
                   "them and only the MIDI is written.")
@CHORDS
def sample(checkpoint: Path, num_samples: int, temperature: float, out_dir: Path | None, seed: int | None,
           qpm: float, device: str, amp: bool, name: str | None, redraw: bool, wav: bool, chords: str | None) -> None:
    """Draw sequences from a trained model and write them as MIDI files; print their paths.

    CHECKPOINT is a run directory (its newest checkpoint), a checkpoint directory, a
    checkpoint's checkpoint.json, or the name of a model in the box (hvae models), whose files go
    to runs/<name>/samples/. Files are named <name>_sample_<date_time>-000-of-005.mid (--name),
    as the reference names them; when a name is in use (another draw in the same second), the
    draw's files are <name>_sample_<date_time>-2-000-of-005.mid (-3, ...): nothing is replaced,
    even by a sampler running at the same moment. Each file lasts the model's whole bars.
    """
    kept: list[Path] = []
    with tqdm(total=num_samples, desc="sample", unit="file", file=sys.stderr, leave=False, dynamic_ncols=True,
              disable=None) as bar, sigterm_as_exit():  # a bar on a terminal only

        def written(paths: list[Path]) -> None:
            kept.extend(paths)
            bar.update(len(paths))
            for path in paths:
                bar.write(str(path), file=sys.stdout)

        try:
            drawn = sample_checkpoint(checkpoint, out_dir, n=num_samples, temperature=temperature, seed=seed,
                                      qpm=qpm, device=device, amp=amp, redraw=redraw, name=name, written=written,
                                      chords=chords)
        except (KeyboardInterrupt, SystemExit):
            bar.close()
            click.echo(f"Interrupted: kept the {len(kept):,} of {num_samples:,} samples written"
                       f"{f' (in {kept[0].parent})' if kept else ''}.", err=True)
            raise
    wavs, missing = render_previews(drawn.paths) if wav else ([], "")
    for note in (*drawn.notes, *([missing] if missing else [])):
        click.echo(note, err=True)
    for path in wavs:
        click.echo(str(path))


@click.command()
@_config_options
@click.option("--num-samples", "-n", type=click.IntRange(min=1, max=MAX_SAMPLES), default=5, show_default=True,
              help=f"How many MIDI files to sample once training ends, at most {MAX_SAMPLES:,}.")
@click.option("--temperature", "-t", type=TEMPERATURE, default=0.5, show_default=True,
              help="Sampling temperature of those files.")
@click.option("--qpm", type=QPM, default=DEFAULT_QPM, show_default=True,
              help="Tempo of the written MIDI, in quarter notes per minute.")
@REDRAW
@CHORDS
@click.pass_context
def run(ctx: click.Context, num_samples: int, temperature: float, qpm: float, redraw: bool, chords: str | None,
        **params: Any) -> None:
    """Prepare the data, train, and sample MIDI: the whole pipeline in one command.

    With no options at all it trains the 'demo' preset (a small 4-bar hierarchical drum model)
    on the bundled Groove MIDI Dataset subset in a few minutes on a laptop CPU, and writes
    runs/demo-<date-time>/ with config.json, metrics.jsonl, checkpoints/ and samples/*.mid.

    A converter, decoder and loss that do not fit are refused before any work, with the reason
    and what would fit; --force trains them anyway.

    \b
    Examples:
      hvae run
      hvae run --converter drums --decoder hierarchical --loss categorical -o slice_bars=4
      hvae run --preset hier-groove-4bar --force --steps 200
    """
    result, session = _train(ctx, _request(params), params)
    world, seed, device = session.world, session.config.train.seed, str(session.device)
    if chords is None and takes_chords(session.converter):
        chords = session.converter.default_chords
        click.echo(f"Note:   the samples play over the chords {chords} (choose with --chords).", err=True)
    if world.main:  # stopped early too (a signal, the time budget): samples of the last checkpoint
        _summarise(result)
        drawn = sample_checkpoint(result.checkpoint, n=num_samples, temperature=temperature, seed=seed, qpm=qpm,
                                  device=device, redraw=redraw, chords=chords)
        for note in drawn.notes:
            click.echo(f"Note:   {note}", err=True)
        click.echo(f"Samples ({len(drawn.paths)}, temperature {temperature}, step {result.step}):")
        for path in drawn.paths:
            click.echo(f"  {path}")
    if result.interrupted:
        raise SystemExit(128 + signal.Signals[result.interrupted].value)
