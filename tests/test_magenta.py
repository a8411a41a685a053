"""hvae import / export: the reference's own checkpoints in, hvae computing exactly what the reference computed.

``../shared/reference/magenta-checkpoints/`` holds checkpoints the reference (Magenta 2.1.4 on
TensorFlow) wrote, in TensorFlow's and magenta.js's formats, with its own results on real GMD windows
(``expected.npz``). Each is imported through the command line, as a user would, and the run directory
it makes is then read back with ``hvae.load_model``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import hvae
from clihelp import invoke, one_line_error
from conftest import REFERENCE
from hvae.errors import OutputExistsError
from hvae.magenta import jsformat
from hvae.magenta.tfbundle import read_bundle
from hvae.magenta.variables import to_reference
from hvae.model import Batch, clip_gradients, learning_rate_at, make_optimizer

torch.set_num_threads(1)

CHECKPOINTS = REFERENCE / "magenta-checkpoints"
CONFIGS = ["cat-drums_2bar_small", "groovae_4bar"]


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"the reference's checkpoints not found at {path} (set HVAE_SHARED)")
    return path


def expected(config: str) -> dict[str, np.ndarray]:
    with np.load(need(CHECKPOINTS / config / "expected.npz")) as data:
        return {k: data[k] for k in data.files}


def imported(tmp_path: Path, source: Path, preset: str, name: str = "run") -> Path:
    result = invoke("import", source, "--preset", preset, "--out", tmp_path / name)
    assert result.exit_code == 0, result.output
    return tmp_path / name


def as_the_reference_ran_it(model):
    """The model as the expected results were computed: no dropout, no scheduled sampling."""
    from hvae.model import build_model

    config = dataclasses.replace(model.config, dropout=0.0, sampling_schedule="constant", sampling_rate=0.0)
    plain = build_model(config, model.spec, force=model.forced)
    plain.load_state_dict(model.state_dict())
    return plain


def controls_of(e: dict) -> torch.Tensor | None:
    """The windows' controls (B, T, C), None for a model without."""
    return torch.from_numpy(e["controls"]) if "controls" in e else None


def batch_of(e: dict) -> Batch:
    return Batch(torch.from_numpy(e["inputs"]), torch.from_numpy(e["outputs"]),
                 torch.from_numpy(e["lengths"]).long(), controls_of(e))


@pytest.mark.parametrize("config", CONFIGS)
def test_an_imported_checkpoint_computes_what_the_reference_computed(tmp_path, config):
    assert_computes_what_the_reference_computed(imported(tmp_path, need(CHECKPOINTS / config / "tf"), config),
                                                expected(config))


HIERARCHICAL_ENCODER = Path(__file__).parent / "data" / "reference" / "hier-enc-drums_4bar"


def test_the_references_hierarchical_encoder_imports_and_computes_what_the_reference_computed(tmp_path):
    """A checkpoint the reference wrote of its HierarchicalLstmEncoder (4-bar drums split into bars of 16
    steps) beside its hierarchical decoder, at small sizes (experiments/reference_fixture.py; the windows
    are the GMD's): imported with the hierarchical encoder as model options, it computes the reference's
    mu, sigma, loss, one training step and greedy decoding."""
    result = invoke("import", HIERARCHICAL_ENCODER / "tf", "--preset", "hier-drums-4bar", "-m", "encoder=hierarchical",
                    "-m", "encoder.rnn_sizes=24", "-m", "decoder.rnn_sizes=32,32", "-m", "z_size=16",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    with np.load(HIERARCHICAL_ENCODER / "expected.npz") as data:
        assert_computes_what_the_reference_computed(tmp_path / "run", {k: data[k] for k in data.files})


def assert_computes_what_the_reference_computed(run: Path, e: dict[str, np.ndarray],
                                                decisive_share: float = 0.9) -> None:
    loaded = hvae.load_model(run)
    assert loaded.step == int(e["step"]) == 100
    model = loaded.model
    with torch.no_grad():
        mu, sigma = model.encode(torch.from_numpy(e["inputs"]), torch.from_numpy(e["lengths"]).long(), controls_of(e))
    for ours, theirs in ((mu, e["mu"]), (sigma, e["sigma"])):
        assert np.abs(ours.numpy() - theirs).max() <= 1e-5 * np.abs(theirs).max()

    model = as_the_reference_ran_it(model).train()
    step, eps = int(e["step"]), torch.from_numpy(e["eps"])
    out = model(batch_of(e), step, noise=eps)
    assert abs(out.loss.item() / float(e["loss"]) - 1) <= 1e-5
    assert np.allclose(out.kl_bits.item(), e["kl_bits"].mean(), rtol=1e-5)

    optimizer = make_optimizer(model, model.config)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate_at(step, model.config)
    optimizer.zero_grad()
    out.loss.backward()
    clip_gradients(model, model.config)
    optimizer.step()
    after = model(batch_of(e), step + 1, noise=eps).loss.item()
    assert abs(after / float(e["loss_after"]) - 1) <= 2e-5

    greedy = loaded.model.decode(torch.from_numpy(e["mu"]), temperature=0.0, controls=controls_of(e)).numpy()
    decisive = e["margin"] > 1e-4
    if loaded.converter.output_kind == "onehot":
        same = greedy.argmax(-1) == e["greedy"].argmax(-1)
    else:
        same = np.isclose(greedy, e["greedy"], atol=1e-5).all(-1)
    assert same[decisive].all() and decisive.mean() > decisive_share


def test_the_tensorflow_and_magenta_js_checkpoints_import_to_the_same_weights(tmp_path):
    config = "cat-drums_2bar_small"
    tf_run = imported(tmp_path, need(CHECKPOINTS / config / "tf"), config, "tf")
    js_run = imported(tmp_path, need(CHECKPOINTS / config / "js"), config, "js")
    tf_state, js_state = hvae.load_model(tf_run).model.state_dict(), hvae.load_model(js_run).model.state_dict()
    assert tf_state.keys() == js_state.keys()
    assert all(torch.equal(tf_state[k], js_state[k]) for k in tf_state)


def test_every_source_form_imports(tmp_path):
    folder = need(CHECKPOINTS / "groovae_4bar" / "tf")
    with tarfile.open(tmp_path / "groovae_4bar.tar", "w") as tar:
        tar.add(folder, arcname="groovae_4bar")
    with tarfile.open(tmp_path / "groovae_4bar.tar.gz", "w:gz") as tar:
        for path in folder.iterdir():
            tar.add(path, arcname=path.name)
    sources = [folder, folder / "model.ckpt", folder / "model.ckpt.index", tmp_path / "groovae_4bar.tar",
               tmp_path / "groovae_4bar.tar.gz"]
    states = []
    for number, source in enumerate(sources):
        run = imported(tmp_path, source, "groovae_4bar", f"run{number}")
        states.append(hvae.load_model(run).model.state_dict())
        note = json.loads((run / "imported.json").read_text())
        assert note["global_step"] == 100 and note["format"] == "tensorflow" and note["skipped"] == ["global_step"]
    assert all(torch.equal(states[0][k], s[k]) for s in states[1:] for k in s)


def test_the_import_says_what_it_read_and_the_run_works_with_every_command(tmp_path, gmd_dir):
    result = invoke("import", need(CHECKPOINTS / "groovae_4bar" / "tf"), "--preset", "groovae_4bar",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "global_step 100" in result.output and "4,085,019 parameters" in result.output
    run = tmp_path / "run"
    assert (run / "config.json").is_file() and (run / "checkpoints" / "step-00000100" / "checkpoint.json").is_file()
    sampled = invoke("sample", run, "-n", "2", "--seed", "3", "--out", tmp_path / "samples")
    assert sampled.exit_code == 0, sampled.output
    assert len(list((tmp_path / "samples").glob("*.mid"))) == 2
    beats = sorted(gmd_dir.rglob("*beat_4-4.mid"))[:2]
    for command in (["reconstruct", run, beats[0], "--out", tmp_path / "recon"],
                    ["interpolate", run, beats[0], beats[1], "--steps", "3", "--out", tmp_path / "interp"],
                    ["evaluate", run, "--split", "validation", "--json"],
                    ["report", run]):
        done = invoke(*command)
        assert done.exit_code == 0, (command[0], done.output)
    assert list((tmp_path / "recon").glob("*-reconstruction.mid"))
    assert (run / "report" / "index.html").is_file()


def test_a_humanizing_grooVAE_imports_and_humanizes(tmp_path, gmd_dir):
    """groovae_2bar_humanize's architecture is groovae_4bar's: its weights (here the fixture's) fit it."""
    run = imported(tmp_path, need(CHECKPOINTS / "groovae_4bar" / "tf"), "groovae_2bar_humanize")
    beat = sorted(gmd_dir.rglob("*beat_4-4.mid"))[0]
    humanized = invoke("humanize", run, beat, "--out", tmp_path / "humanized")
    assert humanized.exit_code == 0, humanized.output
    assert list((tmp_path / "humanized").glob("*.mid"))


def test_fine_tuning_an_imported_run_starts_a_fresh_optimiser_and_says_so(tmp_path):
    run = imported(tmp_path, need(CHECKPOINTS / "cat-drums_2bar_small" / "tf"), "cat-drums_2bar_small")
    result = invoke("train", "--resume", run, "--steps", "101", "--no-progress", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "holds no optimiser state (imported or shipped weights)" in result.output
    assert "Trained to step 101" in result.output
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert line["step"] == 101 and line["lr"] == pytest.approx(learning_rate_at(100, hvae.load_model(run).model.config))


def test_a_checkpoint_that_does_not_fit_the_preset_names_the_variable_and_what_would_fit(tmp_path):
    message = one_line_error(invoke("import", need(CHECKPOINTS / "groovae_4bar" / "tf"), "--preset",
                                    "cat-drums_2bar_small", "--out", tmp_path / "run"))
    assert "encoder/cell_0/bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell/kernel has shape [539, 2048]" in message
    assert "expects [522, 2048]" in message and "Presets that fit: groovae_4bar" in message
    message = one_line_error(invoke("import", CHECKPOINTS / "cat-drums_2bar_small" / "tf", "--preset",
                                    "hier-drums-4bar", "--out", tmp_path / "run"))
    assert "maps to no parameter" in message and "Presets that fit: cat-drums_2bar_small" in message
    message = one_line_error(invoke("import", CHECKPOINTS / "cat-drums_2bar_small" / "tf", "--preset",
                                    "cat-drums_2bar_small", "-m", "z_size=128", "--out", tmp_path / "run"))
    assert "z_size=256" in message
    assert not (tmp_path / "run").exists()


def test_sizes_given_with_model_options_import_a_checkpoint_of_other_sizes(tmp_path):
    source = js_copy(tmp_path)
    variables = jsformat.read_js_folder(source)
    small = {k: v for k, v in variables.items()}
    # the same checkpoint as if its z were 128: cut the z-sized dimensions
    for name in ("encoder/mu", "encoder/sigma"):
        small[f"{name}/kernel"], small[f"{name}/bias"] = variables[f"{name}/kernel"][:, :128], variables[f"{name}/bias"][:128]
    small["decoder/z_to_initial_state/kernel"] = variables["decoder/z_to_initial_state/kernel"][:128]
    kernel = variables["decoder/multi_rnn_cell/cell_0/lstm_cell/kernel"]  # rows: 512 fed, 256 z, 256 h
    small["decoder/multi_rnn_cell/cell_0/lstm_cell/kernel"] = np.concatenate([kernel[:640], kernel[768:]])
    jsformat.write_js_folder(tmp_path / "z128", small, {"type": "MusicVAE"})
    result = invoke("import", tmp_path / "z128", "--preset", "cat-drums_2bar_small", "-m", "z_size=128",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert hvae.load_model(tmp_path / "run").model.config.z_size == 128


def test_a_checkpoint_of_another_configuration_is_one_line(tmp_path):
    # GrooVAE's variables under the NADE preset: the NADE's own weights are missing, and the line says so.
    message = one_line_error(invoke("import", need(CHECKPOINTS / "groovae_4bar" / "tf"), "--preset",
                                    "nade-drums_2bar_full", "--out", tmp_path / "run"))
    assert "decoder/nade" in message
    assert not (tmp_path / "run").exists()


def copy_of(tmp_path: Path, form: str) -> Path:
    """A writable copy of cat-drums_2bar_small's ``tf`` or ``js`` folder, to damage."""
    copy = tmp_path / form
    shutil.copytree(need(CHECKPOINTS / "cat-drums_2bar_small" / form), copy)
    for path in copy.iterdir():
        path.chmod(0o644)
    return copy


def js_copy(tmp_path: Path) -> Path:
    return copy_of(tmp_path, "js")


def tf_copy(tmp_path: Path) -> Path:
    return copy_of(tmp_path, "tf")


def test_quantised_magenta_js_weights_read_back_within_their_step(tmp_path):
    folder = js_copy(tmp_path)
    variables = jsformat.read_js_folder(folder)
    weights, blobs = [], []
    for name, value in variables.items():
        low, high = float(value.min()), float(value.max())
        scale = (high - low) / 255 or 1.0
        q = np.round((value - low) / scale).astype(np.uint8)
        weights.append({"name": name, "shape": list(value.shape), "dtype": "float32",
                        "quantization": {"dtype": "uint8", "scale": scale, "min": low}})
        blobs.append(q.tobytes())
    (folder / "group1-shard1of1").write_bytes(b"".join(blobs))
    (folder / jsformat.MANIFEST).write_text(json.dumps([{"paths": ["group1-shard1of1"], "weights": weights}]))
    run = imported(tmp_path, folder, "cat-drums_2bar_small")
    back = to_reference(hvae.load_model(run).model)
    for weight in weights:
        step = weight["quantization"]["scale"]
        assert np.abs(back[weight["name"]] - variables[weight["name"]]).max() <= step / 2 + 1e-6


def damaged_sources(tmp_path: Path):
    """(what, source, words the one-line error must hold), each a copy of a real checkpoint with one fault."""
    cases = []
    tf = tf_copy(tmp_path / "t1")
    data = tf / "model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-100])
    cases.append(("truncated data file", tf, "truncated"))
    tf = tf_copy(tmp_path / "t2")
    (tf / "model.ckpt.index").unlink()
    cases.append(("missing index", tf, "index"))
    tf = tf_copy(tmp_path / "t3")
    data = tf / "model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[5000] ^= 0xFF
    data.write_bytes(bytes(raw))
    cases.append(("a flipped byte", tf, "checksum"))
    tf = tf_copy(tmp_path / "t4")
    index = tf / "model.ckpt.index"
    index.write_bytes(index.read_bytes()[:-20])
    cases.append(("truncated index", tf, "not a TensorFlow checkpoint index"))
    tf = tf_copy(tmp_path / "t5")
    (tf / "model.ckpt.data-00000-of-00001").unlink()
    cases.append(("missing data file", tf, "missing"))
    js = js_copy(tmp_path / "j1")
    manifest = json.loads((js / jsformat.MANIFEST).read_text())
    manifest[0]["paths"] = ["../../etc/passwd"]
    (js / jsformat.MANIFEST).write_text(json.dumps(manifest))
    cases.append(("a shard outside the folder", js, "not a file inside"))
    js = js_copy(tmp_path / "j2")
    shard = js / "group1-shard1of1"
    shard.write_bytes(shard.read_bytes() + b"\0\0\0\0")
    cases.append(("a wrong byte count", js, "need"))
    js = js_copy(tmp_path / "j3")
    manifest = json.loads((js / jsformat.MANIFEST).read_text())
    manifest[0]["weights"][0]["dtype"] = "complex64"
    (js / jsformat.MANIFEST).write_text(json.dumps(manifest))
    cases.append(("an unsupported dtype", js, "complex64"))
    js = js_copy(tmp_path / "j4")
    (js / jsformat.MANIFEST).write_text("[{")
    cases.append(("a manifest that is not JSON", js, "not readable JSON"))
    (tmp_path / "not.tar").write_bytes(b"this is no archive")
    cases.append(("a .tar that is not one", tmp_path / "not.tar", "not a readable tar archive"))
    cases.append(("nothing there", tmp_path / "nowhere" / "model.ckpt", "does not exist"))
    return cases


def test_a_damaged_source_is_one_line_and_nothing_is_written(tmp_path):
    for what, source, words in damaged_sources(tmp_path / "sources"):
        out = tmp_path / "out" / what.replace(" ", "-")
        message = one_line_error(invoke("import", source, "--preset", "cat-drums_2bar_small", "--out", out))
        assert words in message, (what, message)
        assert not out.exists(), what
        assert not list((tmp_path / "out").glob(".*")) if (tmp_path / "out").exists() else True


def test_an_unsupported_bundle_version_is_refused(tmp_path):
    folder = tf_copy(tmp_path)
    index = folder / "model.ckpt.index"
    raw = index.read_bytes()
    # The header entry (empty key) is the first: its VersionDef has producer 1 (field 3 {1: 1}).
    header = b"\x1a\x02\x08\x01"
    assert raw.count(header) == 1
    altered = raw.replace(header, b"\x1a\x02\x08\x07")
    # keep the block's checksum valid, so it is the version that is refused
    index.write_bytes(_with_fixed_checksums(altered))
    message = one_line_error(invoke("import", folder, "--preset", "cat-drums_2bar_small", "--out", tmp_path / "o"))
    assert "version 7" in message


def _with_fixed_checksums(table: bytes) -> bytes:
    """The SSTable with every block's trailer checksum recomputed (after a deliberate edit)."""
    from hvae.magenta import tfbundle

    raw = bytearray(table)
    footer = raw[-tfbundle.FOOTER_BYTES:]
    position, handles = 0, []
    for _ in range(2):
        offset, position = tfbundle._varint(footer, position, Path("x"))
        size, position = tfbundle._varint(footer, position, Path("x"))
        handles.append((offset, size))
    index_offset, index_size = handles[1]
    blocks = [handles[0], handles[1]]
    index_block = memoryview(bytes(raw))[index_offset:index_offset + index_size]
    for _, handle in tfbundle._block_entries(index_block, Path("x")):
        offset, at = tfbundle._varint(handle, 0, Path("x"))
        size, _ = tfbundle._varint(handle, at, Path("x"))
        blocks.append((offset, size))
    for offset, size in blocks:
        crc = tfbundle.masked_crc32c(bytes(raw[offset:offset + size + 1]))
        raw[offset + size + 1:offset + size + 5] = struct.pack("<I", crc)
    return bytes(raw)


def test_the_reader_needs_no_tensorflow_and_reads_every_variable():
    bundle = read_bundle(need(CHECKPOINTS / "cat-drums_2bar_small" / "tf") / "model.ckpt")
    names = json.loads((CHECKPOINTS / "cat-drums_2bar_small" / "variables.json").read_text())
    assert {n: list(bundle.tensors[n].shape) for n in names} == names
    assert int(bundle.read("global_step")) == 100


def test_export_writes_what_magenta_js_reads_and_import_reads_it_back(tmp_path):
    run = imported(tmp_path, need(CHECKPOINTS / "cat-drums_2bar_small" / "tf"), "cat-drums_2bar_small")
    result = invoke("export", run, "--format", "magenta-js", "--out", tmp_path / "web")
    assert result.exit_code == 0, result.output
    web = tmp_path / "web"
    config = json.loads((web / "config.json").read_text())
    assert config["type"] == "MusicVAE" and config["dataConverter"]["type"] == "DrumsConverter"
    assert config["dataConverter"]["args"]["numSteps"] == 32
    shards = sorted(web.glob("group1-shard*"))
    assert len(shards) == 5 and all(p.stat().st_size <= 4 * 1024 * 1024 for p in shards)
    ours = jsformat.read_js_folder(web)
    theirs = jsformat.read_js_folder(CHECKPOINTS / "cat-drums_2bar_small" / "js")
    assert ours.keys() == theirs.keys()
    assert all(np.abs(ours[k] - theirs[k]).max() <= 1e-6 for k in ours)  # the forget gate's 1.0 out and in


def test_export_refuses_in_one_line_what_magenta_js_cannot_run(tmp_path, trained_drums):
    message = one_line_error(invoke("export", trained_drums, "--out", tmp_path / "web"))
    assert "hierarchical" in message
    assert not (tmp_path / "web").exists()


def test_a_parameter_the_checkpoint_does_not_fill_is_named(tmp_path):
    folder = js_copy(tmp_path)
    variables = jsformat.read_js_folder(folder)
    del variables["decoder/output_projection/bias"]
    jsformat.write_js_folder(tmp_path / "short", variables, {"type": "MusicVAE"})
    message = one_line_error(invoke("import", tmp_path / "short", "--preset", "cat-drums_2bar_small",
                                    "--out", tmp_path / "run"))
    assert "has no variable decoder/output_projection/bias [512], which this model needs" in message


@pytest.mark.parametrize("preset, change, words", [
    ("flat-mel_16bar", {}, "single-layer bidirectional encoders"),
    ("hier-drums-4bar", {}, "hierarchical decoder only beside a hierarchical encoder.*--encoder hierarchical"),
    ("hier-drums-4bar", {"encoder": "hierarchical", "encoder_options": {"level_lengths": (8, 8)}},
     r"splits the encoder's input as the decoder's bars \(16 steps x 4\).*\(8, 8\)"),
    ("hier-drums-4bar", {"encoder": "hierarchical", "encoder_options": {"rnn_sizes": (64, 64)}},
     "one layer per level"),
    ("hier-drums-4bar", {"encoder": "hierarchical", "encoder_options": {"level_lengths": (16, 2, 2)}},
     "splits the encoder's input"),
    ("cat-drums_2bar_small", {"encoder": "hierarchical"}, "hierarchical encoder only with a hierarchical decoder"),
    ("groovae_4bar", {"loss": "groove-gated"}, "groove-gated loss.*cannot be exported"),
    ("groovae_2bar_hits_control", {}, "controls")])
def test_what_magenta_js_cannot_run_is_refused_with_the_reason(preset, change, words):
    from hvae.errors import HvaeError
    from hvae.magenta.exporting import magenta_js_config
    from hvae.model import build_model
    from hvae.plugins import make_converter
    from hvae.presets import get_preset

    chosen = get_preset(preset)
    converter = make_converter(chosen.converter, chosen.converter_options)
    with torch.device("meta"):
        model = build_model(dataclasses.replace(chosen.model, **change), converter)
    with pytest.raises(HvaeError, match=words):
        magenta_js_config(model, converter)


def run_from(run: Path) -> str:
    return json.loads((run / "imported.json").read_text())["format"]


def test_importing_again_into_the_same_folder_replaces_it_only_with_force(tmp_path):
    run = imported(tmp_path, need(CHECKPOINTS / "cat-drums_2bar_small" / "tf"), "cat-drums_2bar_small")
    again = ["import", CHECKPOINTS / "cat-drums_2bar_small" / "js", "--preset", "cat-drums_2bar_small", "--out", run]
    message = one_line_error(invoke(*again))
    assert f"{run} exists and holds an hvae run: choose another --out, or --force to replace it." in message
    assert run_from(run) == "tensorflow"
    result = invoke(*again, "--force")
    assert result.exit_code == 0, result.output
    assert run_from(run) == "magenta-js" and hvae.open_run(run).step == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left beside it


def test_import_checkpoint_words_its_refusal_for_python_and_overwrites_when_asked(tmp_path):
    source = need(CHECKPOINTS / "cat-drums_2bar_small" / "tf")
    hvae.import_checkpoint(source, "cat-drums_2bar_small", tmp_path / "run")
    with pytest.raises(OutputExistsError) as refused:
        hvae.import_checkpoint(source, "cat-drums_2bar_small", tmp_path / "run")
    assert str(refused.value).endswith("choose another out=, or overwrite=True to replace it.")
    result = hvae.import_checkpoint(CHECKPOINTS / "cat-drums_2bar_small" / "js", "cat-drums_2bar_small",
                                    tmp_path / "run", overwrite=True)
    assert result.run_dir == tmp_path / "run" and run_from(result.run_dir) == "magenta-js"


def test_a_failed_forced_import_leaves_the_earlier_run_as_it_was(tmp_path):
    run = imported(tmp_path, need(CHECKPOINTS / "cat-drums_2bar_small" / "tf"), "cat-drums_2bar_small")
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    (tmp_path / "not.tar").write_bytes(b"this is no archive")
    message = one_line_error(invoke("import", tmp_path / "not.tar", "--preset", "cat-drums_2bar_small",
                                    "--out", run, "--force"))
    assert "not a readable tar archive" in message
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not.tar", "run"]


def test_force_replaces_nothing_but_an_earlier_output(tmp_path, monkeypatch):
    source = need(CHECKPOINTS / "cat-drums_2bar_small" / "tf")
    run = imported(tmp_path, source, "cat-drums_2bar_small")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    message = one_line_error(invoke("import", source, "--preset", "cat-drums_2bar_small", "--out", tmp_path / "notes",
                                    "--force"))
    assert message.endswith("is not an hvae run, so it is not replaced (it has no config.json): choose another --out.")
    with pytest.raises(OutputExistsError, match=r"file exists and is not a folder: choose another out=\.$"):
        hvae.import_checkpoint(source, "cat-drums_2bar_small", tmp_path / "file", overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == (tmp_path / "file").read_text() == "mine"
    (run / "mine.txt").write_text("mine")
    message = one_line_error(invoke("import", source, "--preset", "cat-drums_2bar_small", "--out", run, "--force"))
    assert "not replaced (it holds mine.txt)" in message
    (run / "mine.txt").unlink()
    monkeypatch.chdir(run / "checkpoints")
    message = one_line_error(invoke("import", source, "--preset", "cat-drums_2bar_small", "--out", run, "--force"))
    assert f"{run} holds {run / 'checkpoints'}, which would go with it" in message
    monkeypatch.chdir(tmp_path)
    shutil.copytree(source, run / "samples" / "tf")
    message = one_line_error(invoke("import", run / "samples" / "tf", "--preset", "cat-drums_2bar_small",
                                    "--out", run, "--force"))
    assert "which would go with it" in message and (run / "samples" / "tf").is_dir()


def test_force_does_not_replace_a_run_a_training_holds(tmp_path):
    from hvae.rundir import RunDir

    source = need(CHECKPOINTS / "cat-drums_2bar_small" / "tf")
    run = imported(tmp_path, source, "cat-drums_2bar_small")
    with RunDir(run).lock():
        message = one_line_error(invoke("import", CHECKPOINTS / "cat-drums_2bar_small" / "js", "--preset",
                                        "cat-drums_2bar_small", "--out", run, "--force"))
    assert "in use by another hvae run" in message and run_from(run) == "tensorflow"


def test_exporting_again_replaces_the_earlier_export_only_with_force(tmp_path):
    run = imported(tmp_path, need(CHECKPOINTS / "cat-drums_2bar_small" / "tf"), "cat-drums_2bar_small")
    web = tmp_path / "web"
    assert invoke("export", run, "--out", web).exit_code == 0
    (web / "config.json").write_text("{}")
    message = one_line_error(invoke("export", run, "--out", web))
    assert message.endswith("exists and holds a magenta.js checkpoint folder: choose another --out, or --force "
                            "to replace it.")
    assert invoke("export", run, "--out", web, "--force").exit_code == 0
    assert json.loads((web / "config.json").read_text())["type"] == "MusicVAE"
    with pytest.raises(OutputExistsError, match=r"choose another out=, or overwrite=True to replace it\.$"):
        hvae.export_magenta_js(run, web)
    assert hvae.export_magenta_js(run, web, overwrite=True).out == web
    message = one_line_error(invoke("export", run, "--out", run, "--force"))
    assert "is not a magenta.js checkpoint folder, so it is not replaced" in message
    assert hvae.open_run(run).step == 100


def test_a_new_run_from_an_earlier_one_is_refused_a_folder_in_use_in_the_callers_words(tmp_path):
    from hvae.rundir import fork_run

    run = imported(tmp_path, need(CHECKPOINTS / "cat-drums_2bar_small" / "tf"), "cat-drums_2bar_small")
    message = one_line_error(invoke("train", "--resume", run, "--out", run, "--steps", 101))
    assert message.endswith(f"{run} exists and is not an empty folder: choose another --out.")
    with pytest.raises(OutputExistsError, match=r"choose another target=\.$"):
        fork_run(run, run)


def test_without_a_preset_the_only_one_the_variables_fit_is_used_and_named(tmp_path):
    result = invoke("import", need(CHECKPOINTS / "cat-drums_2bar_small" / "js"), "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == ("Preset:   cat-drums_2bar_small, the only preset whose sizes the "
                                             "checkpoint's variables fit")
    assert hvae.open_run(tmp_path / "run").config.preset == "cat-drums_2bar_small"
    imported_ = hvae.import_checkpoint(CHECKPOINTS / "cat-drums_2bar_small" / "tf", preset=None, out=tmp_path / "py")
    assert imported_.preset == "cat-drums_2bar_small"


def test_without_a_preset_several_that_fit_are_listed_and_none_is_said(tmp_path):
    from hvae.errors import CheckpointError

    message = one_line_error(invoke("import", need(CHECKPOINTS / "groovae_4bar" / "tf"), "--out", tmp_path / "run"))
    assert "fits 5 presets: groovae_4bar, groovae_2bar_humanize, " in message and not (tmp_path / "run").exists()
    variables = jsformat.read_js_folder(js_copy(tmp_path))
    variables["encoder/mu/kernel"] = variables["encoder/mu/kernel"][:, :100]
    jsformat.write_js_folder(tmp_path / "odd", variables, {"type": "MusicVAE"})
    with pytest.raises(CheckpointError, match=r"fits no preset \(z_size=100, encoder=bidirectional, encoder.rnn_sizes=512, .*\)\. Name"):
        hvae.import_checkpoint(tmp_path / "odd", None, tmp_path / "run")
    assert not (tmp_path / "run").exists()
