# recbench — the two commands on a fresh machine: `make demo` (main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# the environment is keyed by a hash of the dependency pins: a changed pyproject reinstalls
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
MIRROR ?= $(if $(RECBENCH_MIRROR),$(RECBENCH_MIRROR),$(wildcard ../shared/datasets))
export DGLBACKEND := pytorch
export RECBENCH_MIRROR := $(MIRROR)

.PHONY: setup demo test test-all lint bench clean-runs

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,tune,scale,track]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	@test -n "$(MIRROR)" && $(VENV)/bin/recbench fetch ml-100k --source $(MIRROR) \
	  || $(VENV)/bin/recbench fetch ml-100k
	$(VENV)/bin/recbench preprocess ml-100k --protocol fixed --split u1
	$(VENV)/bin/recbench train experiments/biased_mf.yaml
	$(VENV)/bin/recbench train experiments/bpr_mf.yaml
	$(VENV)/bin/recbench train experiments/most_popular.yaml
	$(VENV)/bin/recbench eval "$$(ls -d runs/bpr_mf-ml100k/*/ | grep -v partial | tail -n 1)"

test: setup
	$(PY) -m pytest -q -m "not slow" tests

test-all: setup
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check recbench tests bench

bench: setup
	@mkdir -p results/bench
	@for f in bench/bench_*.py; do m=bench.$$(basename $$f .py); echo "== $$m"; \
	  $(PY) -m $$m || exit 1; done

clean-runs:
	rm -rf runs
