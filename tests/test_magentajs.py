"""magenta.js as a real client: exported hvae models load in @magenta/music and compute what hvae computes.

The test installs ``@magenta/music@1.23.1`` with npm into a cache folder ($HVAE_NPM_CACHE, else
~/.cache/hvae/npm) once, exports a drums, a groove and a melody model with ``hvae export``, serves
each folder on 127.0.0.1 and runs ``tests/magentajs/encode_decode.js`` in Node: magenta.js's
``encodeTensors`` must give hvae's mu, and ``decodeTensors(z)`` (greedy) hvae's greedy decode.
It skips, with the reason, where node or npm is missing or the package cannot be installed.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import hvae
from clihelp import invoke
from conftest import REFERENCE
from hvae.magenta import jsformat
from hvae.magenta.variables import to_reference
from hvae.model import build_model
from hvae.plugins import make_converter
from hvae.presets import get_preset

torch.set_num_threads(1)

PACKAGE = "@magenta/music@1.23.1"
SCRIPT = Path(__file__).parent / "magentajs" / "encode_decode.js"
CHECKPOINTS = REFERENCE / "magenta-checkpoints"
WINDOWS = 4  # windows encoded and decoded per model (magenta.js runs on its plain-JavaScript backend)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run magenta.js (install Node.js)")
    prefix = Path(os.environ.get("HVAE_NPM_CACHE", Path.home() / ".cache" / "hvae" / "npm")) / "magenta-music-1.23.1"
    modules = prefix / "node_modules"
    if not (modules / "@magenta" / "music" / "node" / "music_vae.js").is_file():
        prefix.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                               PACKAGE], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"npm could not install {PACKAGE}: {done.stderr.strip()[-300:]}")
    return modules


@pytest.fixture(scope="module")
def serve():
    """``serve(folder) -> URL`` of a static server for the folder on 127.0.0.1."""
    servers = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def magenta_js(node_modules: Path, url: str, inputs: np.ndarray | None, z: np.ndarray, tmp_path: Path,
               chords: list[str] | None = None) -> dict:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"inputs": None if inputs is None else inputs.tolist(), "z": z.tolist(),
                                   "chords": chords}))
    done = subprocess.run(["node", str(SCRIPT), url, str(request)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NODE_PATH": str(node_modules)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def greedy_margins(model, z: torch.Tensor, greedy: torch.Tensor, controls: torch.Tensor | None = None) -> np.ndarray:
    """How decisive each step of a greedy decode was: the gap between the two largest logits (one-hot)
    or the smallest |hit logit| (groove), from the outputs given the decode's own previous steps."""
    with torch.no_grad():
        steps = greedy.shape[1]
        lengths = torch.full((z.shape[0],), steps)
        raw = model.decoder(z, greedy, lengths, controls, loss=model.loss)
    if model.spec.output_kind == "onehot":
        top = raw.topk(2, dim=-1).values
        return (top[..., 0] - top[..., 1]).numpy()
    return raw[..., :raw.shape[-1] // 3].abs().amin(dim=-1).numpy()


def exported(tmp_path: Path, run: Path) -> Path:
    result = invoke("export", run, "--format", "magenta-js", "--out", tmp_path / "web")
    assert result.exit_code == 0, result.output
    return tmp_path / "web"


def check_against_magenta_js(tmp_path: Path, run: Path, inputs: np.ndarray, node_modules: Path, serve,
                             chords: list[str] | None = None, folder: Path | None = None) -> None:
    """magenta.js, given the exported ``run`` (or ``folder``, a magenta.js folder of the same weights), encodes
    ``inputs`` to hvae's mu and decodes it greedily as hvae does; under ``chords`` where given."""
    loaded = hvae.load_model(run)
    model = loaded.model
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
    controls = None
    if chords is not None:
        controls = torch.from_numpy(loaded.converter.chord_controls(chords)).expand(x.shape[0], -1, -1)
    with torch.no_grad():
        mu, _ = model.encode(x, torch.full((x.shape[0],), x.shape[1]), controls)
    greedy = model.decode(mu, temperature=0.0, controls=controls)
    out = magenta_js(node_modules, serve(folder or exported(tmp_path, run)), inputs, mu.numpy(), tmp_path, chords)
    js_mu = np.array(out["mu"], dtype=np.float32)
    assert np.abs(js_mu - mu.numpy()).max() <= 1e-5 * np.abs(mu.numpy()).max()
    assert_same_greedy(model, mu, greedy, np.array(out["decoded"], dtype=np.float32), controls)


def assert_same_greedy(model, z: torch.Tensor, greedy: torch.Tensor, js_decoded: np.ndarray,
                       controls: torch.Tensor | None = None) -> None:
    """magenta.js's greedy decode equals hvae's wherever hvae's choice was decisive (margin > 1e-4)."""
    decisive = greedy_margins(model, z, greedy, controls) > 1e-4
    if model.spec.output_kind == "onehot":
        same = js_decoded.argmax(-1) == greedy.numpy().argmax(-1)
    else:
        same = np.isclose(js_decoded, greedy.numpy(), atol=1e-5).all(-1)
    assert decisive.mean() > 0.9 and same[decisive].all()


def imported(tmp_path: Path, source: Path, preset: str) -> Path:
    if not source.exists():
        pytest.skip(f"the reference's checkpoints not found at {source} (set HVAE_SHARED)")
    result = invoke("import", source, "--preset", preset, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


def test_magenta_js_runs_an_exported_drums_model_as_hvae_does(tmp_path, node_modules, serve):
    run = imported(tmp_path, CHECKPOINTS / "cat-drums_2bar_small" / "tf", "cat-drums_2bar_small")
    inputs = np.load(CHECKPOINTS / "cat-drums_2bar_small" / "expected.npz")["inputs"][:WINDOWS]
    check_against_magenta_js(tmp_path, run, inputs, node_modules, serve)


def test_magenta_js_runs_an_exported_groove_model_as_hvae_does(tmp_path, node_modules, serve):
    run = imported(tmp_path, CHECKPOINTS / "groovae_4bar" / "tf", "groovae_4bar")
    inputs = np.load(CHECKPOINTS / "groovae_4bar" / "expected.npz")["inputs"][:WINDOWS]
    check_against_magenta_js(tmp_path, run, inputs, node_modules, serve)


def test_magenta_js_runs_an_exported_melody_model_as_hvae_does(tmp_path, node_modules, serve, reference):
    """A cat-mel_2bar_small with its initial weights plus N(0, 0.05) noise (as the reference's fixtures are
    made), written as a magenta.js folder, imported, exported, and run on real MAESTRO windows."""
    model = noisy("cat-mel_2bar_small")
    jsformat.write_js_folder(tmp_path / "mel", to_reference(model), {"type": "MusicVAE"})
    result = invoke("import", tmp_path / "mel", "--preset", "cat-mel_2bar_small", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    melodies = reference("maestro_mel_4bar")
    bits = np.unpackbits(melodies["inputs"][:WINDOWS, :32], axis=-1)[..., :int(melodies["input_depth"])]
    check_against_magenta_js(tmp_path, tmp_path / "run", bits.astype(np.float32), node_modules, serve)


def noisy(preset_name: str, seed: int = 0):
    """The preset's model with its initial weights plus N(0, 0.05) noise, as the reference's fixtures are made."""
    preset = get_preset(preset_name)
    torch.manual_seed(seed)
    model = build_model(preset.model, make_converter(preset.converter, preset.converter_options))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("model", [
    ["--encoder", "hierarchical"],  # the demo preset (hierarchical decoder, drums) with a hierarchical encoder
    ["--preset", "hier-groove-4bar", "--loss", "groove", "--encoder", "hierarchical", "-m", "decoder.rnn_sizes=64",
     "-m", "encoder.rnn_sizes=64", "-m", "z_size=32"]], ids=["drums", "groove"])
def test_magenta_js_runs_a_hierarchical_model_trained_and_exported_by_hvae_as_hvae_does(model, tmp_path,
                                                                                       node_modules, serve):
    """A model with a hierarchical encoder and decoder, trained through ``hvae train`` on the demo subset
    and exported: magenta.js's conductor model encodes its validation windows to hvae's mu and decodes
    them as hvae does."""
    result = invoke("train", *model, "--steps", "30", "-m", "learning_rate=0.01", "--threads", "1",
                    "--no-progress", "--cache", tmp_path / "cache", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    windows, _ = hvae.open_run(tmp_path / "run").windows("validation", progress=False)
    inputs = windows.as_tensors()["inputs"][:WINDOWS].numpy()
    check_against_magenta_js(tmp_path, tmp_path / "run", inputs, node_modules, serve)
