# The two commands: `make demo` and `make test`. Both set themselves up.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest

.PHONY: setup test test-slow test-compose test-all demo lint protos bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,plot]'
	$(BIN)/python tools/gen_protos.py > /dev/null
	@# docker-compose validates deploy/compose.yaml in the tests (no engine needed).
	@if ! command -v docker-compose >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing docker-compose (Debian) for compose validation"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null) \
	    || echo "warning: docker-compose not installed; compose test will be skipped"; \
	fi
	@# tmux runs `status --watch` in an 80-column terminal in the tests.
	@if ! command -v tmux >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing tmux (Debian) for the status --watch test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null) \
	    || echo "warning: tmux not installed; the status --watch test will be skipped"; \
	fi
	@# promtool checks every service's /metrics exposition in the tests.
	@if ! command -v promtool >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing prometheus (Debian) for promtool"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	    || echo "warning: promtool not installed; the metrics format test will be skipped"; \
	fi
	touch $(STAMP)

# Default tiers; pytest exits non-zero (5) when nothing ran, which fails make.
test: setup
	$(PYTEST) -q tests

test-slow: setup
	$(PYTEST) -q -m "slow and not compose" tests

# docker compose on a real engine (starts its own dockerd as root when none
# answers; skips with the reason otherwise). Prints each phase's time.
test-compose: setup
	$(PYTEST) -q -s -rs -m compose tests/compose

test-all: setup
	$(PYTEST) -q -m "slow or not slow" tests

demo: setup
	$(BIN)/edgesplit demo

lint: setup
	$(BIN)/ruff check edgesplit services tests
	$(BIN)/mypy edgesplit/core

protos: setup
	$(BIN)/python tools/gen_protos.py

clean:
	rm -rf $(VENV) var out .pytest_cache .mypy_cache .ruff_cache
