# Two entry points: `make demo` and `make test`. Both create the virtual environment first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-unit lint bench clean dashboards

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev,trainer]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/botify demo

# Debian packages the tests run for real: HAProxy (the fleet's load balancer), headless
# Chromium (renders the API docs offline) and Prometheus with promtool (the observability
# and alert-rule tests).
TEST_DEBS := haproxy chromium prometheus

test: $(STAMP)
	@for deb in $(TEST_DEBS); do command -v $$deb >/dev/null || test -x /usr/sbin/$$deb \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_DEBS); break; }; done
	$(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m unit

# Every package and everything that imports them: ruff (lint and format), mypy --strict,
# and the import contracts of pyproject.toml ([tool.importlinter]).
PACKAGES   := botify botify_cli botify_sim services
LINT_PATHS := $(PACKAGES) tests bench

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy --strict $(PACKAGES)
	$(BIN)/lint-imports

bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@command -v haproxy >/dev/null || test -x /usr/sbin/haproxy \
	  || (apt-get update -qq && apt-get install -y -qq haproxy)
	$(BIN)/python bench/bench_api.py
	$(BIN)/python bench/bench_fleet.py
	$(BIN)/python bench/bench_stream.py
	$(BIN)/python bench/bench_analysis.py

dashboards: $(STAMP)
	$(BIN)/python deploy/grafana/dashboards.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
