"""The one way into a run and out of it (hvae.session): what a request may hold, a configuration resolved once,
the converter and the model built once, and the lock released on leaving."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hvae.errors import HvaeError
from hvae.model import MusicVAE
from hvae.plugins import Registration
from hvae.rundir import RunDir
from hvae.session import RESUMABLE, Session, TrainRequest
from hvae.training import Trainer

TINY = ["z_size=8", "encoder.rnn_sizes=16", "decoder.rnn_sizes=16"]
TRAIN = {"steps": 2, "batch_size": 16, "log_every": 1, "eval_every": 0, "eval_examples": 16, "threads": 1,
         "workers": 2}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache") / "demo"


def tiny_request(cache, out_dir, **train) -> TrainRequest:
    """The demo preset shrunk, on the bundled demo data."""
    return TrainRequest(preset="demo", model_options=TINY, train={**TRAIN, **train}, cache_dir=cache,
                        out_dir=out_dir)


@pytest.fixture
def builds(monkeypatch):
    """How many converters and models are built for real (not counted on the meta device) while a test runs."""
    counts = {"converters": 0, "models": 0}
    build, init = Registration.build, MusicVAE.__init__

    def counting_build(self, *args, **kwargs):
        counts["converters"] += self.kind == "converters"
        return build(self, *args, **kwargs)

    def counting_init(self, *args, **kwargs):
        counts["models"] += torch.empty(0).device.type != "meta"
        init(self, *args, **kwargs)

    monkeypatch.setattr(Registration, "build", counting_build)
    monkeypatch.setattr(MusicVAE, "__init__", counting_init)
    return counts


def test_a_resume_may_change_only_what_the_one_list_names():
    assert RESUMABLE == ("steps", "minutes", "device", "amp", "threads")
    TrainRequest(resume="runs/x", train={name: None for name in RESUMABLE})  # not given: taken
    with pytest.raises(HvaeError, match=r"batch_size cannot be given with resume \(only steps, minutes, device, "
                                        r"amp, threads may change\)"):
        TrainRequest(resume="runs/x", train={"steps": 10, "batch_size": 8})
    with pytest.raises(HvaeError, match="preset, model_options, out_dir cannot be given with resume"):
        TrainRequest(resume="runs/x", preset="demo", model_options=["z_size=8"], out_dir="runs/y")


def test_a_whole_configuration_takes_no_preset_or_component_and_an_unknown_option_is_named():
    with pytest.raises(HvaeError, match="loss, force cannot be given with config"):
        TrainRequest(config=object(), loss="categorical", force=True)
    with pytest.raises(HvaeError, match=r"Unknown training option\(s\): stepz\. Valid: batch_size, steps, "):
        TrainRequest(train={"stepz": 3})


def test_a_new_session_builds_the_converter_and_the_model_once_and_lets_the_run_go_on_leaving(cache, tmp_path,
                                                                                              builds):
    run = tmp_path / "run"
    with Session(tiny_request(cache, run), progress=False) as session:
        assert builds == {"converters": 1, "models": 1}
        assert isinstance(session.trainer, Trainer) and session.trainer.step == 0
        result = session.train()
    assert session.trainer is None and result.step == 2
    with RunDir(run).lock():  # released: free to take
        pass
    with Session(TrainRequest(resume=run, train={"steps": 3}), progress=False) as session:
        assert session.trainer.step == 2
        session.train()
    assert builds == {"converters": 2, "models": 2}  # the resume built each once more


def test_a_session_that_fails_releases_the_lock_and_a_new_run_leaves_no_directory(cache, tmp_path):
    run = tmp_path / "run"
    session = Session(tiny_request(cache, run), progress=False)  # (held on to: a lock let go of is released too)
    with pytest.raises(RuntimeError, match="stop here"), session:
        raise RuntimeError("stop here")
    with RunDir(run).lock():  # released
        pass
    assert (run / "config.json").is_file()  # written on entering: the run is there to resume
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HvaeError, match="No MIDI files"):
        with Session(TrainRequest(preset="demo", data_dir=empty, cache_dir=tmp_path / "cache",
                                  out_dir=tmp_path / "none"), progress=False):
            pass
    assert not (tmp_path / "none").exists()


def test_from_earlier_trains_an_earlier_runs_configuration_with_what_is_given_on_top(cache, tmp_path):
    earlier = tmp_path / "earlier"
    with Session(tiny_request(cache, earlier), progress=False) as session:
        written = session.config
    for path in (earlier, earlier / "config.json"):
        request = TrainRequest.from_earlier(path, train={"seed": 7, "transpose_range": ()}, out_dir=tmp_path / "new")
        assert request.resolve().config.to_json() == dataclasses.replace(
            written, train=dataclasses.replace(written.train, seed=7, transpose_range=None)).to_json()
