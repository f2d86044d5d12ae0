# Everything a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-scale chaos soak sanitize bytecode influxdb victoria-metrics prometheus man lint typecheck clean

# uv installs the dependencies in ~15 s where pip took ~65 s (pip's
# resolver spent ~40 CPU-s evaluating the index's pages); uv itself comes from pip into
# .venv/uv. pip stays the fallback where uv cannot be had. Bytecode is compiled at install
# time because PYTHONDONTWRITEBYTECODE hosts would otherwise compile on every import.
# The editable install in compat mode is a plain path in a .pth file: the default mode
# puts an import hook in front of every Python process of the venv (15-20 ms each: the
# CLI, the tests' children, the S3 server).
$(STAMP): pyproject.toml setup.py engine/ingest/_lpnative.c
	$(PYTHON) -m venv --without-pip --clear $(VENV)
	{ PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install --quiet --target $(VENV)/uv 'uv>=0.4' && \
	  $(VENV)/uv/bin/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
	    -e '.[dev]' --config-settings editable_mode=compat; } || \
	{ echo "uv could not be had: installing with pip" && $(PYTHON) -m venv --clear $(VENV) && \
	  { $(BIN)/pip install --quiet -e '.[dev]' --config-settings editable_mode=compat 2>/dev/null || \
	    $(BIN)/pip install --quiet -e '.[dev]'; }; }
	mkdir -p $(VENV)/share/man/man1 && cp man/*.1 $(VENV)/share/man/man1/
	touch $(STAMP)

demo: $(STAMP) bytecode
	$(BIN)/tsadmin demo
	@echo "man pages: PATH=\"$$PWD/$(BIN):\$$PATH\" man tsadmin (or man -l man/tsadmin.1)"

# mypy (one core) runs beside a collection that caches pytest's rewritten test modules:
# where PYTHONDONTWRITEBYTECODE is set, every worker would otherwise rewrite them all
# again (~6 CPU-s each).
test: $(STAMP) bytecode influxdb prometheus
	$(BIN)/ruff check .
	$(BIN)/mypy & mypy=$$!; \
	  env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --collect-only -q -o addopts= \
	    -p no:cacheprovider >/dev/null 2>&1; \
	  wait $$mypy
	$(BIN)/pytest

# InfluxDB 1.6 is the peer of the differential ingest test and of the ingest benchmark:
# installed from Debian when we can (root); otherwise that test and those rows say skipped.
influxdb:
	@command -v influxd >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q influxdb >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q influxdb >/dev/null 2>&1; }; }; } || \
	  echo "influxdb could not be installed: the InfluxDB test and benchmark rows are skipped"

# Prometheus 2.42 (with promtool) and node_exporter scrape tsadmin in the metrics tests
# and check the example alert rules; from Debian, as InfluxDB is.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus-node-exporter >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus prometheus-node-exporter >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus prometheus-node-exporter >/dev/null 2>&1; }; }; } || \
	  echo "prometheus could not be installed: the Prometheus and promtool tests are skipped"

# VictoriaMetrics 1.79 (with vmbackup and vmrestore) is a peer of make bench, from Debian.
victoria-metrics:
	@command -v vmrestore >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q victoria-metrics >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q victoria-metrics >/dev/null 2>&1; }; }; } || \
	  echo "victoria-metrics could not be installed: its benchmark rows are skipped"

bench: $(STAMP) influxdb victoria-metrics bytecode
	$(BIN)/python benchmarks/run_all.py

# Every command's time and peak memory at 1M, 10M and 100M rows (issue 27): about two
# hours on 2 cores, 30 GB of disk; writes benchmarks/results/scale.md. Smaller sizes:
# make bench-scale SCALE_ROWS=1000000,10000000
SCALE_ROWS ?= 1000000,10000000,100000000
bench-scale: $(STAMP) bytecode
	$(BIN)/python benchmarks/scale.py --rows $(SCALE_ROWS)

# The fault campaign (tests/chaos): 1,000 seeded trials against real processes, ~30 min
# on 2 cores; writes benchmarks/results/chaos.md. One trial alone: ARGS='--seed S --only I'.
chaos: $(STAMP) bytecode
	$(BIN)/python -m tests.chaos $(ARGS)

# The soak tests of `make test` (4 s each) run 5 minutes each here.
soak: $(STAMP) bytecode
	TSADMIN_SOAK_SECONDS=300 $(BIN)/pytest -n 3 tests/test_soak.py

# The native line-protocol parser built with AddressSanitizer and UBSan, under the tests
# that hold it to the Python parser; the normal build is put back afterwards.
SANITIZE_TESTS := tests/test_lpnative.py tests/test_lpfast.py tests/test_lineprotocol.py \
	tests/test_corpus_stored.py
sanitize: $(STAMP)
	@so=$$(ls engine/ingest/_lpnative*.so) && cp $$so $$so.keep && \
	gcc -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE \
	  -shared -fPIC -I$$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['include'])") \
	  engine/ingest/_lpnative.c -o $$so && \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(BIN)/pytest -o addopts=-q -p no:cacheprovider $(SANITIZE_TESTS); \
	status=$$?; mv $$so.keep $$so; exit $$status

# Compiled once here: an editable install leaves no bytecode, and where
# PYTHONDONTWRITEBYTECODE is set every command would compile the package again as it
# starts (0.1 s of each start-up). A source newer than its bytecode is compiled as before.
bytecode:
	@$(BIN)/python -m compileall -q engine tsadmin >/dev/null

man: $(STAMP)
	$(BIN)/python -m tsadmin.manpage man
	cp man/*.1 $(VENV)/share/man/man1/

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
