"""training.group_by_length: the sampler groups examples of similar lengths into the same batches
(less padding) and keeps its contract: every used example once per epoch, the same global batch for
every split between processes / accumulation / per-device size, indices a pure function of the step."""

import json
import random

import pytest
from conftest import tiny_bert_checkpoint

from pipelines.data.sampler import GlobalBatchSampler
from pipelines.errors import LmforgeError

SPLITS = [(16, 1, 1), (8, 2, 1), (8, 1, 2), (4, 4, 1), (4, 2, 2), (4, 1, 4)]  # (per device, world, GA)


def skewed_lengths(n: int, seed: int = 0) -> list[int]:
    """Mostly short examples and a long tail, as sentence lengths are."""
    rng = random.Random(seed)
    return [min(256, int(rng.paretovariate(1.2) * 8)) for _ in range(n)]


def padding_fraction(sampler: GlobalBatchSampler, lengths: list[int], world: int) -> float:
    """Padded share of the collated micro-batches of one epoch (each padded to its longest example)."""
    padded = real = 0
    for g in range(sampler.per_epoch):
        for r in range(world):
            batch = [lengths[i] for i in sampler.indices(g, r)]
            padded += max(batch) * len(batch)
            real += sum(batch)
    return 1 - real / padded


def epoch_examples(sampler: GlobalBatchSampler, epoch: int, world: int) -> list[int]:
    return [i for g in range(epoch * sampler.per_epoch, (epoch + 1) * sampler.per_epoch)
            for r in range(world) for i in sampler.indices(g, r)]


def test_grouped_batches_pad_far_less_and_use_each_example_once_per_epoch():
    n, lengths = 3000, skewed_lengths(3000)
    plain = GlobalBatchSampler(n, 8, 2, seed=1)
    grouped = GlobalBatchSampler(n, 8, 2, seed=1, lengths=lengths)
    assert padding_fraction(plain, lengths, 2) > 0.4, "the lengths must be skewed for this test to mean anything"
    assert padding_fraction(grouped, lengths, 2) < padding_fraction(plain, lengths, 2) / 4
    for epoch in (0, 1):
        seen = epoch_examples(grouped, epoch, 2)
        assert len(seen) == len(set(seen)) == (n // 16) * 16
        # grouping reorders the epoch's examples; it does not change which ones are used (or dropped)
        assert sorted(seen) == sorted(epoch_examples(plain, epoch, 2))
    assert epoch_examples(grouped, 0, 2) != epoch_examples(grouped, 1, 2)  # each epoch its own order


def test_the_longest_example_comes_in_the_first_batch():
    """An out-of-memory shows at the first step, not hours into the epoch."""
    lengths = list(range(3000))  # distinct: the longest is one example, in any of the 4 megabatches (50 x 16)
    random.Random(3).shuffle(lengths)
    s = GlobalBatchSampler(3000, 8, 2, seed=1, lengths=lengths)
    for epoch in range(5):
        assert lengths[s.indices(epoch * s.per_epoch, 0)[0]] == max(lengths[i] for i in epoch_examples(s, epoch, 2))


def test_grouped_batches_come_in_shuffled_order_not_a_length_curriculum():
    """Sorted megabatches taken in order would run 50 steps from the longest examples to the shortest;
    the batches' order is shuffled, so step number and batch length are unrelated."""
    from scipy.stats import spearmanr

    lengths = skewed_lengths(32 * 200)
    sampler = GlobalBatchSampler(len(lengths), 32, 1, seed=3, lengths=lengths)
    means = [sum(lengths[i] for i in sampler.indices(step, 0)) / 32 for step in range(1, 50)]  # one megabatch
    assert abs(spearmanr(range(len(means)), means).statistic) < 0.35  # sorted in order: -1
    assert max(means) - min(means) > 5  # still grouped: batches differ in length


@pytest.mark.parametrize("n", [100, 1000, 2000])  # 1000, 2000: several megabatches (50 x 16), the last partial
def test_every_split_of_a_global_batch_groups_the_same_examples(n):
    """As tests/engine/test_distributed.py checks without grouping: the same examples in every global
    batch for every split, and with the per-device batch fixed, the same examples in each slice."""
    lengths, seed, epochs = skewed_lengths(n, seed=n), 5, 2
    steps = epochs * (n // 16)

    def slices(bs, world, ga):
        s = GlobalBatchSampler(n, bs, world, seed, ga, lengths=lengths)
        return [[s.indices(step * ga + m, r) for m in range(ga) for r in range(world)] for step in range(steps)]

    runs = {split: slices(*split) for split in SPLITS}
    per_step = {split: [sorted(i for idx in step for i in idx) for step in run] for split, run in runs.items()}
    for split in SPLITS:
        assert per_step[split] == per_step[(16, 1, 1)], split
    for a, b in [((8, 2, 1), (8, 1, 2)), ((4, 4, 1), (4, 2, 2)), ((4, 4, 1), (4, 1, 4))]:
        assert runs[a] == runs[b], (a, b)
    # and grouped: within each slice the lengths are close (sorted runs of one megabatch)
    spread = [max(lengths[i] for i in idx) - min(lengths[i] for i in idx) for step in runs[(4, 2, 2)] for idx in step]
    assert sorted(spread)[len(spread) // 2] <= 1


def test_grouped_indices_are_a_pure_function_of_the_step():
    """Resume: a fresh sampler at step k gives what one that walked there gives, in any order of calls."""
    lengths = skewed_lengths(1000)
    walked = GlobalBatchSampler(1000, 8, 2, seed=7, accumulation=2, lengths=lengths)
    history = [walked.indices(g, r) for g in range(3 * walked.per_epoch) for r in range(2)]
    for g in (0, walked.per_epoch - 1, walked.per_epoch, 2 * walked.per_epoch + 5):
        for r in (0, 1):
            assert GlobalBatchSampler(1000, 8, 2, seed=7, accumulation=2, lengths=lengths).indices(g, r) \
                == history[2 * g + r]
    other_seed = GlobalBatchSampler(1000, 8, 2, seed=8, accumulation=2, lengths=lengths)
    assert [other_seed.indices(g, 0) for g in range(10)] != history[0:20:2]


def test_group_by_length_is_refused_where_examples_have_one_length():
    from pipelines.config import load_recipe
    from tasks.base import get_task

    recipe = load_recipe("bert-tiny", ["training.group_by_length=true"])
    with pytest.raises(LmforgeError, match=r"recipe 'bert-tiny', training.group_by_length: task 'bert-mlm-nsp'"):
        get_task(recipe.task)(recipe)


def varied_glue(root, seed: int = 0):
    """An SST-2-shaped task with sentences of 2 to 40 words (the label readable from one word)."""
    rng = random.Random(seed)
    good, bad, filler = ["good", "great", "fine"], ["bad", "awful", "poor"], ["the", "value", "object", "is", "a"]
    (root / "SST-2").mkdir(parents=True)
    for split, n in (("train", 192), ("dev", 80)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            words = [rng.choice(good if label else bad)] + rng.choices(filler, k=min(39, int(rng.paretovariate(0.8))))
            rng.shuffle(words)
            rows.append(" ".join(words) + f"\t{label}")
        (root / "SST-2" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


def test_tiny_finetune_with_group_by_length(tmp_path):
    from pipelines.commands.finetune import run_finetune
    from pipelines.config import load_recipe
    from pipelines.engine.plan import training_sampler
    from tasks.base import get_task

    tiny_bert_checkpoint(tmp_path / "base")
    glue = varied_glue(tmp_path / "glue")
    common = [f"model.name_or_path={tmp_path / 'base'}", f"objective.glue_dir={glue}", "objective.glue_task=sst2",
              "training.per_device_train_batch_size=8", "training.gradient_accumulation_steps=2"]
    # the sampler the engine builds from this recipe groups: its batches pad less than ungrouped ones
    recipe = load_recipe("glue", common + ["training.group_by_length=true"])
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    task.setup(tok)
    train, _ = task.prepare(tok)
    lengths = task.example_lengths(train)
    grouped = training_sampler(task, train, recipe, world=1)
    ungrouped = load_recipe("glue", common + ["training.group_by_length=false"])
    plain = training_sampler(task, train, ungrouped, world=1)
    assert grouped.lengths is not None and plain.lengths is None
    assert padding_fraction(grouped, lengths, 1) < padding_fraction(plain, lengths, 1) / 2

    summary = run_finetune("glue/sst2", str(tmp_path / "base"), glue_dir=str(glue), output_dir=str(tmp_path / "ft"),
                           overrides=["training.group_by_length=true", "training.per_device_train_batch_size=8",
                                      "training.gradient_accumulation_steps=2", "training.num_train_epochs=2",
                                      "training.logging_steps=1"])
    rows = [json.loads(ln) for ln in (tmp_path / "ft" / "sst2" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows if "loss" in r) == 2 * (192 // 16)
    assert 0.0 <= summary["sst2"]["accuracy"] <= 1.0
    assert (tmp_path / "ft" / "sst2" / "final" / "model.safetensors").is_file()
    recorded = json.loads((tmp_path / "ft" / "sst2" / "recipe.json").read_text())
    assert recorded["training"]["group_by_length"] is True
