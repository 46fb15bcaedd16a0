# Everything a fresh machine needs is installed by these targets; nothing is assumed by hand.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.install-stamp
DATA    ?= data
LOCK    := requirements.lock

.PHONY: install lock clickhouse chromium test test-fast demo bench bench-data lint clean

install: $(STAMP)

# The lock pins every library (Parquet bytes depend on the polars and pyarrow versions, and
# the manifest records them): installs are reproducible. `make lock` regenerates it.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[test]'
	touch $(STAMP)

# Resolve the newest versions that fit pyproject.toml in a fresh venv and pin them all.
lock:
	rm -rf .lock-venv
	$(PY) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q '.[test]'
	( echo "# pinned by 'make lock' from pyproject.toml (extra: test); 'make install' uses it as constraints"; \
	  .lock-venv/bin/python -m pip freeze --exclude lakeslice ) > $(LOCK)
	rm -rf .lock-venv build

# Debian's clickhouse-server for the test fixture (installs with apt-get when root).
clickhouse:
	bash scripts/ensure-clickhouse.sh

# Debian's chromium for the report's browser test (installs with apt-get when root).
chromium:
	bash scripts/ensure-chromium.sh

test: install clickhouse chromium lint
	$(BIN)/python -m pytest

# No ClickHouse server, no kill/crash or fuzz tests: the quick loop while developing.
test-fast: install lint
	$(BIN)/python -m pytest -m "not clickhouse and not slow"

demo: install
	$(BIN)/python fixtures/make_demo.py --data-root $(DATA)
	$(BIN)/lakeslice export --alerts $(DATA)/demo_alerts.parquet --interval 1m \
	  --window pre52_post200 --run-id demo --data-root $(DATA) --overwrite
	$(BIN)/lakeslice show $(DATA)/lake/runs/run_id=demo
	@echo "The lakeslice command is $(BIN)/lakeslice (or: . $(BIN)/activate, then lakeslice --help)."

# Scale 1 (every contender) and scale 10 (the lakeslice paths); the data of both scales is
# generated and loaded once, untimed, cached under benchmarks/data/ (`make bench-data` alone).
bench: install clickhouse
	$(BIN)/python -m benchmarks.run

bench-data: install clickhouse
	$(BIN)/python -m benchmarks.dataset prepare 1
	$(BIN)/python -m benchmarks.dataset prepare 10

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .ruff_cache .hypothesis .lock-venv
