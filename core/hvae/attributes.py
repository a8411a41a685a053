"""Attribute vectors: directions in a model's latent space that change one musical attribute.

MusicVAE's paper (Roberts et al. 2018, section 5.3) finds them as follows, and so does
:func:`attribute_vectors`: encode the windows of a data split to their μ, measure each window's
attributes (:data:`DRUM_ATTRIBUTES`, :data:`GROOVE_ATTRIBUTES`, :data:`MELODY_ATTRIBUTES`, and what the
converter adds: :meth:`hvae.interfaces.Converter.attributes`), and for each attribute subtract the mean μ
of the windows in its bottom quartile from the mean μ of those in its top quartile. Adding a vector
times a scale to an input's μ and decoding moves that attribute (:func:`transform_file`): +1 moves a
window by the distance between the two quartiles' centres.

    vectors = attribute_vectors(open_run("gmd-drums-4bar"))      # the run's data, train split
    vectors.save("runs/gmd-drums-4bar/attributes.json")
    transform_file(run, vectors, "beat.mid", [{"density": 1.0}], out_dir="out/")

A vectors file belongs to one model: it holds a fingerprint of the model's encoder, and a file made
for another model is refused (its vectors point elsewhere in another latent space).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from hvae.errors import HvaeError
from hvae.generation import decode_latents, encode_examples
from hvae.interfaces import Converter
from hvae.latent import DRUM_CHANNEL_10, Window, read_window
from hvae.midifile import midi_bytes, write_new
from hvae.music import DEFAULT_QPM
from hvae.quality import Feature, measure, reads_hits, steps_per_bar
from hvae.report.pianoroll import Panel, lanes_of, roll_png, window_quarters
from hvae.rundir import LoadedRun
from hvae.safefiles import write_atomic

FORMAT = "hvae-attributes/1"
QUARTILE = 0.25  # the share of windows at each end whose mean codes are subtracted
ENCODE_BATCH = 256
MAX_SCALE = 10.0  # |scale| of a vector added: beyond it decodes land far outside anything trained on
MAX_SWEEP = 101  # values in one sweep


Attribute = Feature  # a musical attribute of a window: its name (what users type), what it is, its unit


DRUM_ATTRIBUTES = (
    Attribute("density", "drum hits (step, drum) per bar"),
    Attribute("syncopation", "share of onsets off the eighth-note grid"),
    Attribute("kick", "kick hits per bar"),
    Attribute("snare", "snare hits per bar"),
    Attribute("hats", "hi-hat hits (closed and open) per bar"),
    Attribute("toms", "tom hits per bar"),
    Attribute("cymbals", "crash and ride hits per bar"),
)
GROOVE_ATTRIBUTES = (
    Attribute("velocity", "standard deviation of the hits' velocities", "MIDI velocity"),
    Attribute("swing", "mean |offset| of the hits from the grid", "ms"),
)
MELODY_ATTRIBUTES = (
    Attribute("density", "note onsets per bar"),
    Attribute("interval", "mean |interval| between successive notes", "semitones"),
    Attribute("diatonic", "share of notes in the C major scale"),
    Attribute("syncopation8", "share of onsets on an off-beat eighth"),
    Attribute("syncopation16", "share of onsets on an off-beat sixteenth"),
    Attribute("register", "mean pitch", "MIDI pitch"),
)
DRUM_GROUPS = {"kick": ("kick", "bass drum"), "snare": ("snare",), "hats": ("hi-hat", "hihat"),
               "toms": ("tom",), "cymbals": ("crash", "ride", "cymbal")}  # class names each group holds
C_MAJOR = frozenset({0, 2, 4, 5, 7, 9, 11})


def attributes_of(converter: Converter) -> tuple[Attribute, ...]:
    """The attributes measured on ``converter``'s windows: the drum ones (and groove's where its outputs hold
    velocities and timing) for a converter whose outputs hold drum hits, the melody ones for one-hot notes,
    then the converter's own."""
    built_in: tuple[Attribute, ...] = ()
    if reads_hits(converter):
        built_in = DRUM_ATTRIBUTES + (GROOVE_ATTRIBUTES if converter.output_kind == "groove" else ())
    elif converter.output_kind == "onehot":
        built_in = MELODY_ATTRIBUTES
    own = tuple(Attribute(name, description) for name, (description, _) in converter.attributes().items())
    clash = {a.name for a in own} & {a.name for a in built_in}
    if clash:
        raise HvaeError(f"Converter {converter.name!r} defines attribute {sorted(clash)[0]!r}, which hvae "
                        f"measures itself: give it another name.")
    return built_in + own


def measure_attributes(converter: Converter, outputs: np.ndarray, qpm: float = DEFAULT_QPM) -> dict[str, np.ndarray]:
    """Every attribute of each window of ``outputs`` ``(B, T, D)`` (a converter's output tensors): name ->
    ``(B,)`` float64, NaN where a window has none (no hit of that drum is 0; no onset to place is NaN)."""
    outputs = np.asarray(outputs, dtype=np.float32)
    step_ms = 60_000.0 / (qpm * converter.options.steps_per_quarter)
    found: dict[str, np.ndarray] = {}
    if reads_hits(converter):
        features = measure(converter, outputs, step_ms)
        found["density"], found["syncopation"] = features["hits_per_bar"], features["off_eighths"]
        found.update(_group_hits(converter, outputs))
        if converter.output_kind == "groove":
            found["velocity"], found["swing"] = features["velocity_spread"], features["microtiming"]
    elif converter.output_kind == "onehot":
        found.update(_melody_attributes(converter, outputs))
    for name, (_, function) in converter.attributes().items():
        values = np.asarray(function(outputs), dtype=np.float64)
        if values.shape != (len(outputs),):
            raise HvaeError(f"Converter {converter.name!r}'s attribute {name!r} gave shape {values.shape} for "
                            f"{len(outputs)} windows; one value per window is needed.")
        found[name] = values
    return found


def _group_hits(converter: Converter, outputs: np.ndarray) -> dict[str, np.ndarray]:
    """Hits per bar of each drum group whose classes the converter has (by class name)."""
    hits = converter.drum_hits(torch.from_numpy(outputs)).numpy() > 0.5  # (B, T, N)
    bars = max(hits.shape[1] // steps_per_bar(converter), 1)
    found = {}
    for group, words in DRUM_GROUPS.items():
        lanes = [k for k, name in enumerate(converter.class_names) if any(w in name.lower() for w in words)]
        if lanes:
            found[group] = hits[..., lanes].sum(axis=(1, 2)) / bars
    return found


def _melody_attributes(converter: Converter, outputs: np.ndarray) -> dict[str, np.ndarray]:
    """The melody attributes of the notes ``converter.from_tensors`` writes for each window."""
    rows: dict[str, list[float]] = {a.name: [] for a in MELODY_ATTRIBUTES}
    steps_per_quarter = converter.options.steps_per_quarter
    bars = max(outputs.shape[1] // steps_per_bar(converter), 1)
    for window in outputs:
        midi = converter.from_tensors(window)
        tick = midi.ticks_per_beat / steps_per_quarter  # ticks a step
        notes = sorted((n for inst in midi.instruments for n in inst.notes), key=lambda n: (n.start, n.pitch))
        pitches = np.array([n.pitch for n in notes], dtype=np.float64)
        starts = np.rint(np.array([n.start / tick for n in notes])).astype(np.int64)
        some = len(notes) > 0
        rows["density"].append(len(notes) / bars)
        rows["interval"].append(float(np.abs(np.diff(pitches)).mean()) if len(notes) > 1 else np.nan)
        rows["diatonic"].append(float(np.isin(pitches.astype(np.int64) % 12, list(C_MAJOR)).mean()) if some else np.nan)
        rows["syncopation8"].append(float((starts % steps_per_quarter == steps_per_quarter // 2).mean())
                                    if some and steps_per_quarter % 2 == 0 else np.nan)
        rows["syncopation16"].append(float((starts % 2 == 1).mean()) if some else np.nan)
        rows["register"].append(float(pitches.mean()) if some else np.nan)
    return {name: np.array(values, dtype=np.float64) for name, values in rows.items()}


@dataclasses.dataclass(frozen=True)
class AttributeVector:
    """One attribute's direction in latent space, and the data it was found on."""

    attribute: Attribute
    vector: np.ndarray  # (Z,) float32: mean mu of the top quartile minus that of the bottom one
    bottom: float  # the attribute's mean over the bottom quartile's windows
    top: float  # over the top quartile's
    windows: int  # windows with a value (the others have none: no onset, fewer than two notes)


@dataclasses.dataclass(frozen=True)
class AttributeVectors:
    """A model's attribute vectors (:func:`attribute_vectors`), saved as JSON with :meth:`save`."""

    vectors: dict[str, AttributeVector]
    fingerprint: str  # of the model's encoder (:func:`fingerprint`)
    converter: str
    source: str  # what they were measured on ("train split of DIR")

    def __getitem__(self, name: str) -> AttributeVector:
        if name not in self.vectors:
            raise HvaeError(f"No attribute vector {name!r}; these are: {', '.join(self.vectors)}.")
        return self.vectors[name]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vectors as JSON at ``path`` (replaced whole, never half-written)."""
        data = {"format": FORMAT, "fingerprint": self.fingerprint, "converter": self.converter, "source": self.source,
                "attributes": {name: {"description": v.attribute.description, "unit": v.attribute.unit,
                                      "bottom": v.bottom, "top": v.top, "windows": v.windows,
                                      "vector": [float(x) for x in v.vector]}
                               for name, v in self.vectors.items()}}
        path = Path(path)
        write_atomic(path, (json.dumps(data, indent=1) + "\n").encode())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AttributeVectors":
        """Read a file :meth:`save` wrote; one-line :class:`HvaeError` for anything else."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise HvaeError(f"{path} is not a readable attribute vectors file ({exc}).") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("attributes"), dict):
            raise HvaeError(f"{path} is not an attribute vectors file (format {FORMAT}).")
        try:
            vectors = {name: AttributeVector(Attribute(name, str(v["description"]), str(v["unit"])),
                                             np.asarray(v["vector"], dtype=np.float32), float(v["bottom"]),
                                             float(v["top"]), int(v["windows"]))
                       for name, v in data["attributes"].items()}
            sizes = {v.vector.shape for v in vectors.values()}
            if len(sizes) > 1 or any(len(s) != 1 for s in sizes):
                raise ValueError("vectors of different sizes")
            return cls(vectors, str(data["fingerprint"]), str(data["converter"]), str(data["source"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise HvaeError(f"{path} is not a valid attribute vectors file ({exc}).") from None

    def check_model(self, loaded: LoadedRun, where: str) -> None:
        """Refuse vectors made for another model than ``loaded``'s (``where``: the file, for the message)."""
        if self.fingerprint != fingerprint(loaded.model):
            raise HvaeError(f"{where} holds the attribute vectors of another model (made for a {self.converter} "
                            f"model with other weights); make this one's with 'hvae attributes {loaded.name}'.")


def fingerprint(model: torch.nn.Module) -> str:
    """A digest of the encoder's weights: the latent space the vectors live in."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def encode_windows(loaded: LoadedRun, outputs_inputs: Mapping[str, torch.Tensor],
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
    """mu ``(N, Z)`` of windows given as ``as_tensors()`` gives them, in batches."""
    model, device = loaded.model, loaded.model.device
    rows = []
    count = len(outputs_inputs["inputs"])
    with torch.no_grad():
        for start in range(0, count, ENCODE_BATCH):
            part = slice(start, start + ENCODE_BATCH)
            controls = outputs_inputs["controls"][part]
            mu, _ = model.encode(outputs_inputs["inputs"][part].to(device), outputs_inputs["lengths"][part].to(device),
                                 controls.to(device) if controls.shape[-1] else None)
            rows.append(mu.float().cpu().numpy())
            if progress:
                progress(min(start + ENCODE_BATCH, count))
    return np.concatenate(rows) if rows else np.zeros((0, model.config.z_size), np.float32)


def attribute_vectors(loaded: LoadedRun, split: str = "train", data_dir: str | os.PathLike | None = None,
                      progress: Callable[[int, int], None] | None = None) -> AttributeVectors:
    """The attribute vectors of ``loaded``'s model, measured on the ``split`` windows of its data (or of
    ``data_dir``): for each attribute, the mean mu of the windows in its top quartile minus that of its
    bottom quartile. An attribute with no spread in the data (both quartiles alike) gets no vector."""
    windows, folder = loaded.windows(split, data_dir, progress=False)
    if len(windows) < 8:
        raise HvaeError(f"The {split} split of {folder} has {len(windows)} windows; attribute vectors need at "
                        f"least 8 (give more data with --data).")
    tensors = windows.as_tensors()
    mu = encode_windows(loaded, tensors, progress and (lambda done: progress(done, len(windows))))
    values = measure_attributes(loaded.converter, tensors["outputs"].numpy())
    vectors = {}
    for attribute in attributes_of(loaded.converter):
        found = _vector(attribute, values.get(attribute.name), mu)
        if found is not None:
            vectors[attribute.name] = found
    return AttributeVectors(vectors, fingerprint(loaded.model), loaded.converter.name,
                            f"{split} split of {folder} ({len(windows):,} windows)")


def _vector(attribute: Attribute, values: np.ndarray | None, mu: np.ndarray) -> AttributeVector | None:
    """Top quartile's mean mu minus the bottom one's; None where the attribute cannot split the windows."""
    if values is None:
        return None
    known = ~np.isnan(values)
    if known.sum() < 8:
        return None
    measured, codes = values[known], mu[known]
    low, high = np.quantile(measured, [QUARTILE, 1 - QUARTILE])
    bottom, top = measured <= low, measured >= high
    if low == high or bottom.all() or top.all():
        return None
    vector = codes[top].mean(axis=0) - codes[bottom].mean(axis=0)
    return AttributeVector(attribute, vector.astype(np.float32), float(measured[bottom].mean()),
                           float(measured[top].mean()), int(known.sum()))


def vectors_path(loaded: LoadedRun) -> Path:
    """Where ``hvae attributes`` writes a run's vectors by default, and ``hvae transform`` reads them."""
    return loaded.outputs.attributes_file


def find_vectors(loaded: LoadedRun, path: str | os.PathLike | None = None) -> tuple[AttributeVectors, Path]:
    """The vectors of ``loaded``'s model: from ``path``, else the run's ``attributes.json`` (its output
    folder's, then its own directory's: a model in the box ships its vectors), checked against the model."""
    candidates = [Path(path)] if path is not None else list(dict.fromkeys([vectors_path(loaded),
                                                                           loaded.dir.attributes_file]))
    for candidate in candidates:
        if candidate.is_file() or path is not None:
            vectors = AttributeVectors.load(candidate)
            vectors.check_model(loaded, str(candidate))
            return vectors, candidate
    raise HvaeError(f"{loaded.name} has no attribute vectors yet: make them with 'hvae attributes "
                    f"{loaded.name}' (add --data DIR for a run without its data).")


def parse_setting(text: str) -> tuple[str, float]:
    """``"density=+1.0"`` -> ``("density", 1.0)``; one-line :class:`HvaeError` otherwise."""
    name, sep, value = text.partition("=")
    try:
        scale = float(value)
    except ValueError:
        scale = math.nan
    if not sep or not name.strip() or not math.isfinite(scale):
        raise HvaeError(f"Attribute {text!r}: give NAME=SCALE, e.g. density=+1.0.")
    return name.strip(), scale


def parse_sweep(text: str) -> tuple[str, np.ndarray]:
    """``"density=-1.5:1.5:7"`` -> ``("density", 7 values from -1.5 to 1.5)``."""
    name, sep, spec = text.partition("=")
    parts = spec.split(":")
    try:
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        start, stop, count = math.nan, math.nan, 0
    if not sep or len(parts) != 3 or not name.strip() or not (math.isfinite(start) and math.isfinite(stop)) \
            or not 2 <= count <= MAX_SWEEP:
        raise HvaeError(f"Sweep {text!r}: give NAME=FROM:TO:COUNT, e.g. density=-1.5:1.5:7 (2 to {MAX_SWEEP} "
                        f"values).")
    return name.strip(), np.linspace(start, stop, count)


def settings_of(vectors: AttributeVectors, fixed: Mapping[str, float],
                sweep: tuple[str, Sequence[float]] | None = None) -> list[dict[str, float]]:
    """One ``{attribute: scale}`` per file to write: ``fixed`` alone, or ``fixed`` with each value of
    ``sweep``; attributes checked against ``vectors``, scales against :data:`MAX_SCALE`."""
    settings = [dict(fixed)] if sweep is None else [{**fixed, sweep[0]: float(v)} for v in sweep[1]]
    if not settings[0]:
        raise HvaeError("Nothing to add: give --attribute NAME=SCALE or --sweep NAME=FROM:TO:COUNT.")
    for setting in settings:
        for name, scale in setting.items():
            vectors[name]  # noqa: B018 - raises, naming the vectors there are, for an unknown name
            if not abs(scale) <= MAX_SCALE:
                raise HvaeError(f"Scale {scale:g} for {name}: at most {MAX_SCALE:g} either way (1 moves a window "
                                f"from the bottom quartile's centre to the top one's).")
    return settings


def _label(setting: Mapping[str, float]) -> str:
    """``density+0.5-syncopation-1``: names a file by what was added."""
    return "-".join(f"{name}{scale:+g}" for name, scale in setting.items())


@dataclasses.dataclass(frozen=True)
class Transformed:
    """What :func:`transform_file` wrote and measured."""

    midi: tuple[Path, ...]  # one file per setting
    picture: Path  # the window as read above each file written
    settings: tuple[dict[str, float], ...]  # the scale of each vector added, per file
    measured: tuple[dict[str, float], ...]  # the attributes of the window as read, then of each file
    notes: tuple[str, ...]


def transform_file(loaded: LoadedRun, vectors: AttributeVectors, path: str | os.PathLike,
                   settings: Sequence[Mapping[str, float]], out_dir: str | os.PathLike, *, window: int | None = None,
                   temperature: float = 0.0, seed: int | None = None, qpm: float | None = None,
                   name: str | None = None, drum_channel: str = DRUM_CHANNEL_10) -> Transformed:
    """Encode one window of ``path`` to mu, add each setting's scaled vectors (``{"density": 1.0}``),
    decode, and write one file per setting (``<label>-density+0.5.mid``) and a picture of the window as
    read above them all into ``out_dir``; measure the attributes of the window and of each file."""
    converter = loaded.converter.for_user_input()
    chosen: Window = read_window(converter, path, window, name, drum_channel)
    example, model = chosen.example, loaded.model
    shifts = np.stack([sum((scale * vectors[n].vector for n, scale in s.items()),
                           np.zeros(model.config.z_size, np.float32)) for s in settings])
    mu = encode_examples(model, [example])  # (1, Z)
    controls = example.controls if example.controls.shape[-1] else None
    decoded = decode_latents(model, mu + torch.from_numpy(shifts).to(mu), temperature, seed, controls=controls)
    labels = [_label(s) for s in settings]
    files = [chosen.midi(converter, outputs, qpm) for outputs in decoded]
    lanes = lanes_of(converter)
    panels = [Panel(f"{chosen.label}: as read", chosen.midi(converter, example.outputs, qpm), lanes)]
    picture = roll_png(panels + [Panel(label, midi, lanes) for label, midi in zip(labels, files)],
                       window_quarters(converter))
    names = lambda attempt: [f"{chosen.label}{'' if attempt == 1 else f'-{attempt}'}-{label}"
                             for label in [*(f"{label}.mid" for label in labels), "attributes.png"]]
    written = write_new(out_dir, [*(midi_bytes(midi) for midi in files), picture], names)
    windows = np.concatenate([np.asarray(example.outputs, np.float32)[None], decoded])
    measured = measure_attributes(converter, windows, qpm or chosen.qpm)
    per_window = tuple({n: float(values[k]) for n, values in measured.items()} for k in range(len(windows)))
    notes = tuple(n for n in (chosen.note(), chosen.tempo_note(qpm)) if n)
    return Transformed(tuple(written[:-1]), written[-1], tuple(dict(s) for s in settings), per_window, notes)
