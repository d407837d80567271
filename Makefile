# The only install script: every target builds .venv itself.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1

.PHONY: venv test demo clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned first: the CPU build is what this project runs on (see DEVELOPERS.md)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/fastqmd generate examples/water_demo.yaml
	$(BIN)/fastqmd dataset info demo_out/water_demo.h5

clean:
	rm -rf $(VENV) demo_out
