# dasan -- two commands do all the set-up on a fresh Debian machine:
#   make run    run every service in one process on embedded defaults (SQLite, in-process bus)
#   make test   ruff, mypy and the whole test suite (starts PostgreSQL and Redis when needed)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages: what `make run` needs, and what the tests need on top.
RUN_DEBS := ffmpeg espeak-ng sox libsox-fmt-all nodejs
TEST_DEBS := $(RUN_DEBS) redis-server redis-tools postgresql postgresql-contrib sip-tester kamailio baresip chromium chromium-driver fonts-noto-cjk
PYTEST_ARGS ?=
SOAK_ARGS ?=

.PHONY: run test lint venv debs-run debs-test services bench soak mutate clean jssip

$(STAMP): pyproject.toml
	@python3 -c 'import ensurepip, venv' 2>/dev/null || scripts/ensure-debs.sh python3-venv
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# JsSIP (pinned in package-lock.json) bundled for the browser; the app serves it, no CDN.
# nodesource's nodejs carries npm; Debian's needs the npm package too.
JSSIP := ivr/webrtc/static/vendor/jssip.min.js
$(JSSIP): package.json package-lock.json
	@command -v npm >/dev/null || scripts/ensure-debs.sh nodejs npm
	npm ci --no-audit --no-fund
	npm run build

jssip: $(JSSIP)

debs-run:
	@scripts/ensure-debs.sh $(RUN_DEBS)

debs-test:
	@scripts/ensure-debs.sh $(TEST_DEBS)

services: debs-test
	@scripts/ensure-services.sh

run: $(STAMP) debs-run $(JSSIP)
	$(VENV)/bin/dasan up

lint: $(STAMP)
	$(VENV)/bin/ruff check ivr tests $(wildcard agi_scripts bench)
	$(VENV)/bin/mypy

test: $(STAMP) services lint $(JSSIP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: $(STAMP) services
	$(PY) -m bench

# A compressed day of 120 with faults, checked afterwards (bench/soak.py; docs/benchmarks.md,
# "Soak"): under 10 minutes, not part of make test. Shorter: make soak SOAK_ARGS="--scale 0.02 --minutes 2"
soak: $(STAMP) services
	$(PY) -m bench.soak --doc $(SOAK_ARGS)

# Mutation testing of the control and security modules (slow; not part of make test).
# make mutate MODULES="ivr/web/auth.py"  runs one; docs/testing.md says how to read it.
mutate: $(STAMP) services
	$(PY) scripts/mutate.py $(MODULES)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache node_modules $(JSSIP)
