# lmforge: the common commands. Everything runs inside .venv (created by `make install`).
PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
# torch goes in first and pinned: on CPU machines pip takes the local CPU build; an unpinned
# torch (or a range admitting newer releases) pulls several GB of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
MODEL      ?= bert-tiny
TASK       ?= glue
GLUE_DIR   ?=
DATA       ?=
FAMILY     ?= bert
CORPUS     ?= default
VOCAB      ?= 8192
ARGS       ?=
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test test-fast prepare pretrain finetune predict tokenizer corpus bench bench-data lint recipes clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e ".[dev]"  # dev includes deepspeed: no ops built at install
	touch $@

test: install
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q tests -m "not slow"

prepare: install
	$(PY) -m pipelines prepare $(MODEL) $(ARGS)

pretrain: install
	$(PY) -m pipelines pretrain $(MODEL) $(ARGS)

finetune: install
	$(PY) -m pipelines finetune --task $(TASK) --model $(MODEL) $(if $(GLUE_DIR),--glue_dir $(GLUE_DIR)) \
		$(if $(DATA),--data $(DATA)) $(if $(SEEDS),--seeds $(SEEDS)) $(ARGS)

predict: install
	$(PY) -m pipelines finetune --do_predict --task $(TASK) --model $(MODEL) --glue_dir $(GLUE_DIR) $(ARGS)

tokenizer: install
	$(PY) -m pipelines tokenizer --family $(FAMILY) --corpus $(CORPUS) --vocab_size $(VOCAB) \
		--output_dir runs/tokenizers/$(FAMILY)-$(VOCAB)

corpus: install
	$(PY) -m pipelines corpus

recipes: install
	$(PY) -m pipelines recipes

bench: install
	$(PY) -m pipelines.bench $(ARGS)

# issue #7 data-path numbers (prep MB/s vs HF run_mlm, pretrain peak RSS, time to first step);
# builds 50 MB + 500 MB corpora in a temp folder: run it on a quiet machine
bench-data: install
	$(PY) -m pipelines.bench_data $(ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs .pytest_cache
