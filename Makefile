# stillmotion: `make run` starts a working server; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run PORT=8001` serves elsewhere; the URLs handed to clients follow.
HOST ?= 127.0.0.1
PORT ?= 8000
APT_PACKAGES := python3-venv curl ffmpeg redis-server wrk postgresql

.PHONY: install system-deps run test test-fast lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "$(PYTHON) -m venv failed: on Debian/Ubuntu run 'make system-deps' (python3-venv)"; \
		exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests and benchmarks use: python3-venv for .venv, curl for the README's
# examples, ffmpeg for the zoompan comparison, redis-server for shared rate limits, wrk for the
# API benchmark, postgresql for the throw-away test cluster (its initdb and pg_ctl, under
# /usr/lib/postgresql/<version>/bin, and the `postgres` user the tests run it as when root).
# Skipped when already there.
system-deps:
	@command -v dpkg >/dev/null || { echo "not Debian/Ubuntu: install $(APT_PACKAGES) yourself"; exit 0; }; \
	missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

run: install
	$(BIN)/stillmotion migrate
	STILLMOTION_PUBLIC_URL=$${STILLMOTION_PUBLIC_URL:-http://$(HOST):$(PORT)} \
		$(BIN)/stillmotion serve --host $(HOST) --port $(PORT)

test: system-deps install
	npm ci --prefix tests/node --no-audit --no-fund --silent
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: system-deps install
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks

bench: system-deps install
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/api.py

clean:
	rm -rf $(VENV) var .pytest_cache
