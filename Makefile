# pushpipe — every target creates the virtual environment and installs what it needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint format bench soak synth bootstrap deploy chromium clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian's Chromium for the browser tests (Playwright drives it via executable_path;
# Playwright's own browser download does not work here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: browser tests will be skipped"; \
	  else echo "chromium not found and not root: browser tests will be skipped"; fi; }

## The full local demo: local cloud up, subscribers, an audience drop, the send with a
## progress bar, pings, the report, an audit query.
demo: $(STAMP)
	$(BIN)/pushpipe demo

## The default test suite (unit, integration on the local cloud, CDK, browser).
test: $(STAMP) chromium
	@rc=0; $(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

test-fast: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Benchmarks (not in the default tests): results in bench/results/ and BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python -m bench.bench_send
	$(BIN)/python -m bench.bench_pings
	$(BIN)/python -m bench.bench_engagement
	$(BIN)/python -m bench.report

## Slow suites: 1M-recipient runs, soak.
soak: $(STAMP)
	$(BIN)/pytest -m slow -q

# --- AWS deploy (CDK; the CLI comes from package.json, the app is python -m infra.cdk_app)
CDK := npx --no-install cdk
STACK ?= Pushpipe
CDK_ENV := PATH="$(CURDIR)/.venv/bin:$$PATH" JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
CDK_PARAMS = -c pushpipe:stackName=$(STACK) -c pushpipe:vapidSubject=$(VAPID_SUBJECT) \
	-c pushpipe:approverEmails=$(APPROVERS) -c pushpipe:sesIdentity=$(SES_IDENTITY) \
	-c pushpipe:tenants=$(TENANTS) $(if $(ALARM_EMAIL),-c pushpipe:alarmEmail=$(ALARM_EMAIL))

node_modules/.bin/cdk: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

## Synthesize the stack offline into cdk.out (example parameters unless given).
synth: VAPID_SUBJECT ?= mailto:ops@example.com
synth: APPROVERS ?= approver@example.com
synth: SES_IDENTITY ?= example.com
synth: TENANTS ?= demo
synth: $(STAMP) node_modules/.bin/cdk
	$(CDK_ENV) $(CDK) synth --quiet $(CDK_PARAMS)

## One-time per account/region.
bootstrap: $(STAMP) node_modules/.bin/cdk
	$(CDK_ENV) $(CDK) bootstrap

## make deploy VAPID_SUBJECT=... APPROVERS=... SES_IDENTITY=... TENANTS=...
deploy: $(STAMP) node_modules/.bin/cdk
	@test -n "$(VAPID_SUBJECT)" -a -n "$(APPROVERS)" -a -n "$(SES_IDENTITY)" -a -n "$(TENANTS)" || { \
	  echo "usage: make deploy VAPID_SUBJECT=mailto:ops@example.com APPROVERS=a@example.com,b@example.com"; \
	  echo "                   SES_IDENTITY=example.com TENANTS=acme,globex [ALARM_EMAIL=oncall@example.com] [STACK=Pushpipe]"; \
	  exit 2; }
	$(CDK_ENV) $(CDK) deploy $(CDK_PARAMS) --require-approval broadening

clean:
	rm -rf .pushpipe cdk.out build .pytest_cache
