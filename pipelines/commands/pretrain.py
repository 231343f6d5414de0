"""`pretrain RECIPE` and `prepare RECIPE`: a recipe's training run, or only its prepared data."""

from __future__ import annotations


def pretrain(args) -> int:
    """Train the recipe end to end (the engine) and print the loss and the export folders."""
    from pipelines.config import load_recipe
    from pipelines.engine.loop import train
    from tasks.base import get_task

    recipe = load_recipe(args.recipe, args.overrides)
    check_pretrainable(args.recipe, recipe)
    task = get_task(recipe.task)(recipe)
    result = train(task, recipe)
    if result.history:
        first, last = result.history[0]["loss"], result.history[-1]["loss"]
        print(f"{recipe.name}: {result.steps} steps, loss {first:.4f} -> {last:.4f}; "
              f"exported: {', '.join(str(d) for d in result.export_dirs)}")
    return 0


def prepare(args) -> int:
    """Train or reuse the tokenizer and write the shards pretrain would read (the cache keyed by both)."""
    from pipelines.config import load_recipe
    from pipelines.data.prepare import shards_folder
    from pipelines.runs.run_folder import claim_output_dir
    from tasks.base import get_task

    recipe = load_recipe(args.recipe, args.overrides)
    task = get_task(recipe.task)(recipe)
    claim_output_dir(recipe, training=False)  # its tokenizer goes to output_dir/tokenizer, as pretrain's would
    tokenizer = task.load_tokenizer()
    task.setup(tokenizer)
    train, held = task.prepare(tokenizer)
    print(f"{recipe.name}: {len(train):,} training and {len(held):,} evaluation examples from "
          f"{shards_folder(recipe.data, tokenizer)}")
    return 0


def check_pretrainable(name: str, recipe) -> None:
    """A fine-tuning or distillation recipe given to `pretrain` without what it trains from is one line
    naming the command that runs it (`glue` is a recipe of `finetune --task glue`, not a pretraining)."""
    from pipelines.errors import LmforgeError
    from pipelines.runs.results import run_kind

    kind = run_kind(recipe.task)
    if kind == "finetune" and not recipe.model.name_or_path:
        raise LmforgeError(f"pretrain {name}: '{name}' is a fine-tuning recipe (objective {recipe.task}); run it with "
                           f"make finetune TASK=<task> MODEL=<checkpoint> ARGS='--recipe {name}' (TASK: see "
                           "`make recipes`)")
    if kind == "distill" and not recipe.objective.get("teacher"):
        raise LmforgeError(f"pretrain {name}: '{name}' is a distillation recipe (objective {recipe.task}); run it "
                           "with make distill METHOD=<method> TEACHER=<folder> STAGE=general|glue/<task>")
