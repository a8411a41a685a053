# hvae: the two front-door commands (see README.md).
#   make demo   set up, then train on the bundled demo data and write MIDI samples
#   make test   set up, then run the test suite
#   make bench  set up, then time hvae and the reference alternately (REFERENCE=VENV, BENCH_ARGS=...)
#   make gpu-prepare   fill .gpu/ (wheels, the GMD) for benchmarks/gpu/check.py on a GPU machine
#   make gpu-check     run that check here (on a machine with a CUDA GPU; see benchmarks/RESULTS.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := plugins/converters plugins/decoders plugins/losses
SHARED ?= $(if $(HVAE_SHARED),$(HVAE_SHARED),../shared)
GMD ?= $(SHARED)/data/groove
GPU_CARRY := .gpu
# What the GPU machine lacks (it has torch, numpy, matplotlib, packaging...): pure-Python wheels, pinned.
GPU_WHEELS := miditoolkit==1.0.1 mido==1.3.3

# The reference's environment for make bench (../shared/reference/speed/setup.sh VENV builds one).
REFERENCE ?= $(HVAE_REFERENCE_PYTHON)

.PHONY: setup demo test bench bench-suite gpu-prepare gpu-check clean

setup: $(VENV)/.installed

# torch==2.13.0 first: a CPU build that pip takes from this machine's disk; the project's own
# requirement is a range (torch>=2.1,<3) that it satisfies, so nothing larger is pulled in.
$(VENV)/.installed: pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]' $(addprefix -e ,$(PLUGINS))
	touch $@

# At most 5 minutes of training (800 steps: 72-87 s on 2 idle cores of an Intel Xeon, 2026-12-07): a slow or busy machine stops there, says so, and samples.
demo: setup
	$(BIN)/hvae run --minutes 5

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/samerun.py $(if $(REFERENCE),--reference '$(REFERENCE)') $(BENCH_ARGS)

# hvae alone against the floor, with pytest-benchmark's statistics.
bench-suite: setup
	$(BIN)/python -m pytest benchmarks/ --benchmark-only -q

# Everything benchmarks/gpu/check.py needs on a machine without internet, in the ignored folder .gpu/
# (carried with the device call): the two wheels (py3-none-any only, so they install on any Python 3)
# and the Groove MIDI Dataset's MIDI files and info.csv (about 9 MB).
gpu-prepare: setup
	@test -f $(GMD)/info.csv || { echo "No Groove MIDI Dataset at $(GMD) (set GMD= or HVAE_SHARED=)"; exit 1; }
	rm -rf $(GPU_CARRY) && mkdir -p $(GPU_CARRY)/wheels $(GPU_CARRY)/gmd
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --implementation py --abi none --platform any \
		--python-version 3.12 -d $(GPU_CARRY)/wheels $(GPU_WHEELS)
	cp -R $(GMD)/. $(GPU_CARRY)/gmd/
	@du -sh $(GPU_CARRY)/wheels $(GPU_CARRY)/gmd; du -sh $(GPU_CARRY)

# The virtual environment's Python where there is one, else python3 (the GPU machine's, which has torch).
gpu-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) benchmarks/gpu/check.py

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks $(GPU_CARRY) gpu-check
