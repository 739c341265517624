# medrec: `make demo` runs the pipeline on a generated sample; `make test` runs the tests.
# Both create .venv on first use (CPU-only installs; the [gpu] extra is never installed here).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	# xgrammar (vLLM's grammar engine) for the schema-compiles tests, without the triton GPU
	# compiler its Linux wheel requires: its other requirements come with [dev] already.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt xgrammar apache-tvm-ffi
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/medrec demo

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) medrec-demo
