"""What `make gpu-check` runs, at the two sizes: the real models on one GPU, and toy models on a CPU
(--smoke, the test suite). Same sections, same code; only these numbers differ."""

from __future__ import annotations

from dataclasses import dataclass, field

# the sections in the order they run, with their share of --budget (seconds): the cheap sections
# first, so a slot cut short still has the headline numbers; compile last of the speed sections, it
# spends most of its box compiling
SECTIONS = {"peak": 0.04, "throughput": 0.22, "compile": 0.24, "distributed": 0.2, "resume": 0.17,
            "padding_free": 0.13}
DEFAULT_BUDGET_S = 480.0  # the 8 minutes of a borrowed H100 slot


@dataclass(frozen=True)
class Model:
    """One throughput row: a recipe (models are built from its config: no downloads) + overrides."""

    label: str
    recipe: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    smoke: bool
    models: tuple[Model, ...]
    precision: str  # throughput and compile rows: bf16 on both (the CPU autocasts to bf16 as well)
    run_precision: str  # the distributed / resume / fine-tuning runs
    peak: dict  # measure_matmul_peak arguments (dtype name, n, seconds)
    warmup: int  # steps before the clock starts (allocator, autocast caches, recompiles of compile rows)
    steps: int  # timed steps
    compile_models: tuple[str, ...]  # labels of the models that also get a compiled row
    run_recipe: str  # the 30-step runs of distributed and resume
    run_overrides: tuple[str, ...]
    run_steps: int
    finetune_recipe: str  # the random-init checkpoint that padding_free fine-tunes
    finetune_overrides: tuple[str, ...]
    finetune_examples: int
    # seconds a section may take at least, however small --budget is: imports and a model build
    min_section_s: float = 60.0
    extra: dict = field(default_factory=dict)


# GPU: the recipes as they ship, one micro-batch per optimizer step (accumulation only adds steps
# without optimizer work, so it can only raise tokens/s), the recipe's per-device batch. The embedded
# corpus trains tokenizers of 10-14k ids where the papers have 30-50k: the model is given the paper's
# vocabulary (unused rows) so that every matmul, the parameter count and MFU are the paper model's.
NO_ACCUMULATION = ("training.gradient_accumulation_steps=1",)


def _paper(vocab: int, *more: str) -> tuple[str, ...]:
    return (f"model.config.vocab_size={vocab}", *NO_ACCUMULATION, *more)


GPU = Plan(
    smoke=False,
    models=(Model("bert-base seq128", "bert-base", _paper(30522)),
            Model("bert-base seq512", "bert-base-512", _paper(30522, "model.name_or_path=null")),
            Model("roberta-base", "roberta-base", _paper(50265)),
            Model("gpt2-small", "gpt2-small", _paper(50257)),
            Model("t5-small", "t5-small", _paper(32128))),
    precision="bf16", run_precision="bf16",
    peak={"dtype": "bfloat16", "n": 8192, "seconds": 3.0},
    warmup=10, steps=40,
    compile_models=("bert-base seq128", "gpt2-small", "roberta-base", "bert-base seq512", "t5-small"),
    run_recipe="bert-base", run_overrides=_paper(30522), run_steps=30,
    finetune_recipe="bert-base", finetune_overrides=_paper(30522), finetune_examples=4000,
)

# toy sizes: 2 layers, 32 wide, 1,000-token vocabularies, 80 documents of the embedded corpus
_TOY_DATA = ("tokenizer.vocab_size=1000", "data.max_documents=80", "training.per_device_train_batch_size=8",
             *NO_ACCUMULATION)
_TOY_ENCODER = ("model.config.hidden_size=32", "model.config.num_hidden_layers=2",
                "model.config.num_attention_heads=2", "model.config.intermediate_size=64")
TOY_BERT = (*_TOY_ENCODER, "model.config.max_position_embeddings=128", "data.max_seq_length=64",
            "data.dupe_factor=1", *_TOY_DATA)
SMOKE = Plan(
    smoke=True,
    models=(Model("bert-base seq128", "bert-base", TOY_BERT),
            Model("bert-base seq512", "bert-base-512", ("model.name_or_path=null", *TOY_BERT,
                                                        "data.max_seq_length=128")),
            Model("roberta-base", "roberta-base", (*_TOY_ENCODER, "model.config.max_position_embeddings=66",
                                                   "data.max_seq_length=64", "tokenizer.model_max_length=64",
                                                   *_TOY_DATA)),
            Model("gpt2-small", "gpt2-small", ("model.config.n_layer=2", "model.config.n_embd=32",
                                               "model.config.n_head=2", "model.config.n_positions=64",
                                               "data.max_seq_length=64", "tokenizer.model_max_length=64",
                                               *_TOY_DATA)),
            Model("t5-small", "t5-small", ("model.config.d_model=32", "model.config.d_ff=64",
                                           "model.config.num_layers=2", "model.config.num_decoder_layers=2",
                                           "model.config.num_heads=2", "model.config.d_kv=16",
                                           "data.max_seq_length=64", *_TOY_DATA))),
    precision="bf16", run_precision="no",  # fp32 runs on the CPU: a resume and a reload must be exact there
    peak={"dtype": "float32", "n": 256, "seconds": 0.2},
    warmup=2, steps=3,
    compile_models=("bert-base seq128",),  # inductor's C++ build takes ~20 s a model on 2 cores: one proves the path
    run_recipe="bert-base", run_overrides=TOY_BERT, run_steps=30,
    finetune_recipe="bert-base", finetune_overrides=TOY_BERT, finetune_examples=96,
    min_section_s=300.0,  # a loaded CI machine: the boxes only stop a hung section
)


def section_budgets(budget_s: float, chosen: list[str], plan: Plan) -> dict[str, float]:
    """Seconds per chosen section: its share of the budget, rescaled over the chosen ones, at least
    plan.min_section_s."""
    total = sum(SECTIONS[s] for s in chosen) or 1.0
    return {s: max(plan.min_section_s, budget_s * SECTIONS[s] / total) for s in chosen}
