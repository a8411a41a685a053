# hvae: the two front-door commands (see README.md).
#   make demo   set up, then train on the bundled demo data and write MIDI samples
#   make test   set up, then run the test suite
#   make bench  set up, then time hvae and the reference alternately (REFERENCE=VENV, BENCH_ARGS=...)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := plugins/converters plugins/decoders plugins/losses

# The reference's environment for make bench (../shared/reference/speed/setup.sh VENV builds one).
REFERENCE ?= $(HVAE_REFERENCE_PYTHON)

.PHONY: setup demo test bench bench-suite clean

setup: $(VENV)/.installed

# torch==2.13.0 first: a CPU build that pip takes from this machine's disk; the project's own
# requirement is a range (torch>=2.1,<3) that it satisfies, so nothing larger is pulled in.
$(VENV)/.installed: pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]' $(addprefix -e ,$(PLUGINS))
	touch $@

demo: setup
	$(BIN)/hvae run

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/samerun.py $(if $(REFERENCE),--reference '$(REFERENCE)') $(BENCH_ARGS)

# hvae alone against the floor, with pytest-benchmark's statistics.
bench-suite: setup
	$(BIN)/python -m pytest benchmarks/ --benchmark-only -q

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks
