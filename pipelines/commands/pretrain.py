"""`pretrain RECIPE` and `prepare RECIPE`: a recipe's training run, or only its prepared data."""

from __future__ import annotations


def pretrain(args) -> int:
    """Train the recipe end to end (the engine) and print the loss and the export folders."""
    from pipelines.config import load_recipe
    from pipelines.engine.loop import train
    from tasks.base import get_task

    recipe = load_recipe(args.recipe, args.overrides)
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
