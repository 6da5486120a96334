# Two-command quickstart: `make demo` and `make test` (both install first).
# Uses the active virtual environment if there is one, else creates .venv.
SHELL := /bin/bash
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.facebias-installed
WORKDIR ?= workdirs/demo
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-quick bench clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# Builds (or finds in its cache) the oneDNN convolution library; without a compiler it
# says so and the library keeps XLA's own convolutions.
install: $(STAMP)
	@$(PY) -c 'import sys; from facebias_jax.ops import onednn; sys.exit(onednn.main())'

demo: install
	$(PY) -m experiments.train_classifier --flagfile=experiments/flags/cnn_synthetic.flags --workdir=$(WORKDIR)/standard_cnn
	$(PY) -m experiments.train_dbvae --flagfile=experiments/flags/dbvae_synthetic.flags --workdir=$(WORKDIR)/dbvae
	$(PY) -m experiments.evaluate --compare=$(WORKDIR)/standard_cnn,$(WORKDIR)/dbvae --labels=standard_cnn,dbvae --workdir=$(WORKDIR)/compare

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist=loadfile -q

# Everything but the tests marked slow (subprocess and end-to-end runs): under 2 minutes.
test-quick: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist=loadfile -q -m "not slow"

bench: install
	$(PY) -m benchmarks.run_all $(BENCH_ARGS)

clean:
	rm -rf workdirs .pytest_cache
