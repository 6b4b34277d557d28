# logstream developer commands. Every target creates the virtualenv on first use,
# so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
RUNSTAMP := $(VENV)/.installed
DATA_DIR ?= ./logstream-data
LISTEN ?= 127.0.0.1:7070
HTTP_LISTEN ?= 127.0.0.1:7071
KAFKA_LISTEN ?= 127.0.0.1:9092

.PHONY: help run test test-services lint fmt typecheck bench bench-peers proto check-protos clean

help:
	@echo "make run        start a broker on $(LISTEN) with data in $(DATA_DIR), /metrics on $(HTTP_LISTEN), Kafka clients on $(KAFKA_LISTEN)"
	@echo "make test       install with the dev extra, lint, run every test"
	@echo "make bench      storage and end-to-end benchmarks -> benchmarks/RESULTS.md"
	@echo "make lint       ruff"
	@echo "make proto      regenerate gRPC stubs from protos/"
	@echo "make clean      remove the virtualenv, caches and local data"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUNSTAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(RUNSTAMP)

run: $(RUNSTAMP)
	$(VENV)/bin/logstream serve --data-dir $(DATA_DIR) --listen $(LISTEN) --http-listen "$(HTTP_LISTEN)" --kafka-listen $(KAFKA_LISTEN)

# The peer-benchmark smoke test needs a real redis-server, the web console tests headless
# Chromium and its driver, the Kafka listener tests kcat: install them when we can (root
# with apt-get, as on CI); elsewhere the tests say why they skip.
test-services:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server for the peer-benchmark smoke test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	      || echo "could not install redis-server; its smoke test will skip"; \
	  else echo "redis-server not installed; its smoke test will skip"; fi; }
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver for the web console tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "could not install chromium; the console tests will skip"; \
	  else echo "chromium not installed; the console tests will skip"; fi; }
	@command -v curl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing curl for the docs' HTTP examples"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null) \
	      || echo "could not install curl; the docs test of monitoring.md will fail"; \
	  else echo "curl not installed; the docs test of monitoring.md will fail"; fi; }
	@command -v kcat >/dev/null 2>&1 || command -v kafkacat >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing kcat for the Kafka listener tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null) \
	      || echo "could not install kcat; its Kafka listener tests will skip"; \
	  else echo "kcat not installed; its Kafka listener tests will skip"; fi; }

# Two workers (most tests wait on broker processes), then the timing-sensitive tests alone:
# docs/decisions/0040-parallel-test-run.md.
test: $(STAMP) test-services
	$(VENV)/bin/ruff check logstream tests tools benchmarks docs/examples
	$(VENV)/bin/ruff format --check logstream tests tools benchmarks docs/examples
	$(VENV)/bin/mypy logstream
	$(PY) tools/check_layers.py
	$(PY) tools/check_sizes.py
	$(PY) tools/gen_protos.py --check
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not serial" --durations=15
	$(PY) -m pytest -q -m serial --durations=5

lint: $(STAMP)
	$(VENV)/bin/ruff check logstream tests tools benchmarks docs/examples
	$(VENV)/bin/ruff format --check logstream tests tools benchmarks docs/examples

fmt: $(STAMP)
	$(VENV)/bin/ruff format logstream tests tools benchmarks docs/examples
	$(VENV)/bin/ruff check --fix logstream tests tools benchmarks docs/examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy logstream

proto: $(STAMP)
	$(PY) tools/gen_protos.py

check-protos: $(STAMP)
	$(PY) tools/gen_protos.py --check

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# logstream vs Redis Streams vs NATS JetStream (benchmarks/peers/); apt-installs redis-server
# and nats-server when missing. ARGS=--quick for a < 1 minute smoke run.
bench-peers: $(STAMP)
	$(VENV)/bin/pip install -q -e '.[dev,bench]'
	$(PY) benchmarks/peers/run.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis $(DATA_DIR) *.egg-info benchmarks/.work
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
