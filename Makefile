# lmforge: the common commands. Everything runs inside .venv (created by `make install`).
PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
# torch goes in first and pinned: on CPU machines pip takes the local CPU build; an unpinned
# torch (or a range admitting newer releases) pulls several GB of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
# RECIPE: what `pretrain` / `prepare` train (tasks/recipes/<name>.yaml); MODEL: a trained checkpoint
# (an export folder, a Hub name, or a recipe name meaning runs/<recipe>/final) for finetune, predict, push.
# MODEL=<recipe> for pretrain still works (the older spelling).
RECIPE     ?= $(if $(filter command line environment,$(origin MODEL)),$(MODEL),bert-tiny)
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

.PHONY: experiment install system-packages notebook test test-fast prepare pretrain finetune predict distill bench-distill report push tokenizer corpus bench bench-data lint recipes clean gpu-check

install: system-packages $(VENV)/.installed

# what the test suite needs outside Python: a C++ compiler (DeepSpeed JIT-compiles its CPU ops) and
# Chromium (tests/report/test_browser.py renders the report page); Debian packages, installed when
# this is root on a Debian/Ubuntu machine, else named
system-packages:
	@missing=""; command -v g++ >/dev/null || missing="g++"; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq $$missing; \
		else echo "make install: missing system packages:$$missing (apt-get install$$missing); the tests that need them skip"; fi; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e ".[dev]"  # dev includes deepspeed: no ops built at install
	touch $@

# a DeepSpeed op build that was killed leaves its lock file behind, and every later build waits on it
# forever (torch's FileBaton): a lock older than 10 minutes is stale
STALE_BUILD_LOCKS = find $${TORCH_EXTENSIONS_DIR:-$$HOME/.cache/torch_extensions} -name lock -mmin +10 -delete 2>/dev/null || true

test: install
	@$(STALE_BUILD_LOCKS)
	$(PY) -m pytest -q tests

test-fast: install
	@$(STALE_BUILD_LOCKS)
	$(PY) -m pytest -q tests -m "not slow"

prepare: install
	$(PY) -m pipelines prepare $(RECIPE) $(ARGS)

pretrain: install
	$(PY) -m pipelines pretrain $(RECIPE) $(ARGS)

finetune: install
	$(PY) -m pipelines finetune --task $(TASK) --model $(MODEL) $(if $(GLUE_DIR),--glue_dir $(GLUE_DIR)) \
		$(if $(DATA),--data $(DATA)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(INIT_FROM),--init_from $(INIT_FROM)) $(ARGS)

predict: install
	$(PY) -m pipelines finetune --do_predict --task $(TASK) --model $(MODEL) $(if $(GLUE_DIR),--glue_dir $(GLUE_DIR)) \
		$(if $(DATA),--data $(DATA)) $(ARGS)

# distillation (pipelines/commands/distill.py): METHOD=kd|distilbert|tinybert TEACHER=<folder> STUDENT=<recipe|folder>
# STAGE=general (on the corpus, no task) | glue/<task>, e.g. make distill METHOD=kd TEACHER=<fine-tuned>
# STUDENT=student-tiny STAGE=glue/sst2. TASK=pretrain|glue/<task> (the older spelling) still works.
METHOD     ?= kd
STUDENT    ?= student-tiny
STAGE      ?=
distill: install
	$(PY) -m pipelines distill --method $(METHOD) $(if $(TEACHER),--teacher $(TEACHER)) --student $(STUDENT) \
		$(if $(STAGE),--stage $(STAGE)) $(if $(filter command line environment,$(origin TASK)),--task $(TASK)) \
		$(if $(GLUE_DIR),--glue_dir $(GLUE_DIR)) $(ARGS)

# issue #11 numbers: teacher vs distilled student on SST-2 (accuracy, retention, parameters, latency)
bench-distill: install
	$(PY) -m bench distill $(ARGS)

# static dashboard (index.html + PNG plots) of every result under RUNS; OUT defaults to $(RUNS)/report
RUNS       ?= runs
report: install
	$(PY) -m pipelines report $(RUNS) $(if $(OUT),--out $(OUT))

# MODEL=<export folder or recipe name> REPO=<user/name>; ARGS=--dry_run builds the folder and card only
push: install
	@test -n "$(REPO)" || { echo "make push: set REPO=<user/name> (and MODEL=<export folder>)" >&2; exit 2; }
	$(PY) -m pipelines push $(MODEL) --repo_id $(REPO) $(ARGS)

# the dashboard notebook, interactive (JupyterLab: the `notebook` extra, installed on first use)
notebook: install
	$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install -q -e ".[notebook]"
	LMFORGE_RUNS=$(abspath $(RUNS)) $(VENV)/bin/jupyter lab notebooks/dashboard.ipynb

tokenizer: install
	$(PY) -m pipelines tokenizer --family $(FAMILY) --corpus $(CORPUS) --vocab_size $(VOCAB) \
		--output_dir runs/tokenizers/$(FAMILY)-$(VOCAB)

corpus: install
	$(PY) -m pipelines corpus

recipes: install
	$(PY) -m pipelines recipes

# issue #12 side by side (bench/): lmforge vs HF Trainer (RoBERTa MLM, GLUE, SQuAD-format QA with run_qa's
# preprocessing), vs a nanoGPT loop (GPT-2), BERT NSP, MFU; alternated fresh processes, --reps 3, medians ->
# runs/bench/suite.{json,md}. Run it on a quiet machine. ARGS="--only mlm,clm --steps 60"; ARGS="--only qa";
# ARGS="throughput" / "sst2"
bench: install
	$(PY) -m bench $(ARGS)

# issue #7 data-path numbers (prep MB/s vs HF run_mlm, pretrain peak RSS, time to first step);
# builds 50 MB + 500 MB corpora in a temp folder: run it on a quiet machine
bench-data: install
	$(PY) -m bench data $(ARGS)

# issue #22 part 3: the GPU evidence on one H100/H200 in <= 8 min -> $(OUT)/gpu_check.{json,md} (docs/GPU.md).
# No install step (a borrowed GPU slot is offline): .venv's python if present, else python3. ARGS="--only compile"
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON_SYS)) -m bench.gpu_check --out $(or $(OUT),runs/gpu_check) $(ARGS)

# issue #21: does pretraining pay off in this budget? tokenizer -> prepare -> pretrain (BUDGET) -> GLUE x SEEDS
# for the pretrained model and the same architecture from random init (BASELINE=false: skip) -> report;
# one folder (runs/experiment/<recipe>-<budget>) with experiment.json; rerun the same command to continue
BUDGET     ?= 60m
experiment: install
	$(PY) -m pipelines experiment $(if $(filter command line environment,$(origin RECIPE)),$(RECIPE),modernbert-mini-cram) \
		--budget $(BUDGET) $(if $(GLUE_DIR),--glue_dir $(GLUE_DIR)) $(if $(SEEDS),--seeds $(SEEDS)) \
		$(if $(BASELINE),--baseline $(BASELINE)) $(if $(DISTILL),--distill $(DISTILL)) $(if $(TASKS),--tasks $(TASKS)) $(if $(JOBS),--jobs $(JOBS)) \
		$(if $(filter-out default,$(CORPUS)),--corpus $(CORPUS)) $(ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs .pytest_cache
