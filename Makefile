# Two commands do all the set-up on a fresh machine (Python 3.10+ with venv):
#   make demo   the light install (the library: no Ray, no transformers, no test tools), then the
#               main job on the bundled sample data: recipes -> shards -> validate -> a short
#               training run on each demo that proves them (ends with "verdict: PASS")
#   make test   the test install (`.[test]`: + pytest, hypothesis, transformers, Ray), then the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and only when missing, so a CUDA build you already have is kept.
# Set TORCH_SPEC to choose another build, e.g. TORCH_SPEC='torch==2.13.0' (the default).
TORCH_SPEC ?= torch==2.13.0
OUT ?= out
# Training threads for the demo (default: the cores this process may run on). On a busy machine
# fewer threads than cores is faster: make demo THREADS=1
THREADS ?=
TRAIN_OPTS := $(if $(THREADS),--threads $(THREADS))
# Training steps of the demo: pretraining needs few to prove it learns; fine-tuning keeps the default
# 2,000, the fewest that reliably reach 90% exact match on the held-out answers (1,000 reached 74%).
# benchmarks/demo_time.py measures the whole demo from a fresh clone.
DEMO_PRETRAIN_STEPS ?= 50
DEMO_SFT_STEPS ?= 2000

.PHONY: install install-test demo two-stage test test-all clean

# The light install: what the library and `make demo` need.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e .
	touch $@

# The test install: the light one plus the `test` extra.
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps "mosaicml-streaming==0.13.0"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/dataprep run recipes/demo-pretrain.yaml --out $(OUT)/demo-pretrain --overwrite
	$(BIN)/dataprep validate $(OUT)/demo-pretrain
	$(BIN)/dataprep run recipes/demo-sft.yaml --out $(OUT)/demo-sft --overwrite
	$(BIN)/dataprep validate $(OUT)/demo-sft
	$(BIN)/python -c "import datasets; d = datasets.load_from_disk('$(OUT)/demo-sft'); print(d)"
	$(BIN)/dataprep train $(OUT)/demo-pretrain --out $(OUT)/demo-pretrain-train --overwrite --steps $(DEMO_PRETRAIN_STEPS) $(TRAIN_OPTS)
	$(BIN)/dataprep train $(OUT)/demo-sft --out $(OUT)/demo-sft-train --overwrite --steps $(DEMO_SFT_STEPS) $(TRAIN_OPTS)

# In-context learning vs fine-tuning on one table: pretrain a base, fine-tune it (README "two-stage demo").
two-stage: install
	$(BIN)/python benchmarks/two_stage.py $(if $(THREADS),--threads $(THREADS))

# Two test processes (pytest-xdist): the suite is mostly one-core Python; on the 2-core CI machine
# they take ~70% of the serial time. TEST_PROCS=0 runs it in one process.
TEST_PROCS ?= 2
test: install-test
	$(BIN)/python -m pytest -q -n $(TEST_PROCS) --durations=20

test-all: install-test
	$(BIN)/python -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(OUT) .pytest_cache
