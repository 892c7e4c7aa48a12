# Two commands do all the set-up on a fresh machine (Python 3.10+ with venv):
#   make demo   install, then run the main job on the bundled sample data:
#               recipes -> shards -> validate -> a short training run that proves them
#   make test   install, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and only when missing, so a CUDA build you already have is kept.
# Set TORCH_SPEC to choose another build, e.g. TORCH_SPEC='torch==2.13.0' (the default).
TORCH_SPEC ?= torch==2.13.0
OUT ?= out

.PHONY: install demo test test-all clean

$(BIN)/dataprep: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,ray]"
	touch $@

install: $(BIN)/dataprep

demo: install
	$(BIN)/dataprep run recipes/demo-pretrain.yaml --out $(OUT)/demo-pretrain --overwrite
	$(BIN)/dataprep validate $(OUT)/demo-pretrain
	$(BIN)/dataprep run recipes/demo-sft.yaml --out $(OUT)/demo-sft --overwrite
	$(BIN)/dataprep validate $(OUT)/demo-sft
	$(BIN)/python -c "import datasets; d = datasets.load_from_disk('$(OUT)/demo-sft'); print(d)"
	$(BIN)/dataprep train $(OUT)/demo-pretrain --out $(OUT)/demo-pretrain-train --overwrite --steps 100
	$(BIN)/dataprep train $(OUT)/demo-sft --out $(OUT)/demo-sft-train --overwrite

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(OUT) .pytest_cache
