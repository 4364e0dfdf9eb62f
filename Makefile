# SpatialTwin: `make demo` serves the embedded default at http://127.0.0.1:8080/;
# `make test` installs what the tests need (Debian redis-server and chromium included) and runs them:
# first what may share the two cores (pytest-xdist, two workers), then, alone, what judges time.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
MODELS_STAMP := models/.built
DEMO_DATA ?= var/demo
APT_PACKAGES := redis-server chromium fonts-liberation nginx wrk

.PHONY: demo test install system-deps models lint bench garments soak fuzz clean

install: $(PY_STAMP) $(NPM_STAMP) $(MODELS_STAMP)

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	SCARF_ANALYTICS=false npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The MediaPipe pose bundles (.task) are built from npm @mediapipe/pose, never downloaded.
$(MODELS_STAMP): $(PY_STAMP) $(NPM_STAMP)
	$(BIN)/python -m spatialtwin.tracking.bundle build
	touch $@

models: $(MODELS_STAMP)

# Debian packages the tests drive for real: a Redis server, nginx and a headless Chromium
# (and wrk, the load generator of bench/fleet.py).
system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

demo: install
	@echo "Starting SpatialTwin (embedded store in $(DEMO_DATA)) at http://127.0.0.1:8080/"
	$(BIN)/spatialtwin serve --host 127.0.0.1 --port 8080 --data $(DEMO_DATA)

lint: $(PY_STAMP)
	$(BIN)/ruff check src tests bench

test: install system-deps lint
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 -n 2 -m "not serial"; \
	parallel=$$?; \
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 -m serial; \
	serial=$$?; \
	test $$parallel -eq 0 -a $$serial -eq 0

bench: install system-deps
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# The whole real-garment matrix of issue #6 (every MakeHuman outfit on five twins, posed looks,
# bare OBJs): about an hour on two cores. `make test` runs a slice of it. Each outfit also
# textured on two twins: look GLBs and chromium screenshots in bench/_out/outfits/.
garments: install system-deps
	$(BIN)/python bench/garment.py --shots bench/_out/outfits

# Ten minutes of mirror sessions and shoppers against one server (loopback): memory, file
# descriptors, tasks, threads and p95 latency sampled over time, exit 1 on a growth trend.
soak: install
	$(BIN)/python bench/soak.py --seconds 600

# The fuzz tests' long profile (tests/fuzz_strategies.py): 3000 inputs per parser (override with
# SPATIALTWIN_FUZZ_EXAMPLES), random, failures kept in tests/_out/hypothesis and replayed first;
# per-parser counts at the end. `make test` runs the same tests with the small `ci` profile.
fuzz: install
	SPATIALTWIN_FUZZ_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz_*.py

clean:
	rm -rf $(VENV) node_modules models var
