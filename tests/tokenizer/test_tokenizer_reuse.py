"""The same recipe in a new output folder reuses the tokenizer trained before on the same corpus with
the same settings (tasks/shared/tokenizer.py): the trainers break ties by hash-map order, so training
again could change the vocabulary and with it every prepared shard."""

from conftest import TINY_BERT

from pipelines.config import load_recipe
from tasks.base import get_task
from tasks.shared.tokenizer import tokenizer_cache


def _tokenizer(out, *extra):
    recipe = load_recipe("bert-tiny", TINY_BERT + [f"training.output_dir={out}", *extra])
    get_task(recipe.task)(recipe).load_tokenizer()
    return recipe, (out / "tokenizer" / "tokenizer.json").read_bytes()


def test_a_new_output_folder_gets_the_same_tokenizer(tmp_path):
    recipe, first = _tokenizer(tmp_path / "a", "training.seed=4242")
    assert (tokenizer_cache(recipe) / "tokenizer.json").read_bytes() == first  # cached after training
    _, second = _tokenizer(tmp_path / "b", "training.seed=4242")
    assert second == first  # copied from the cache, not trained again


def test_other_settings_or_reuse_false_train_their_own(tmp_path):
    recipe, _ = _tokenizer(tmp_path / "a", "training.seed=4343")
    other, _ = _tokenizer(tmp_path / "b", "training.seed=4343", "tokenizer.vocab_size=600")
    assert tokenizer_cache(other) != tokenizer_cache(recipe) and (tokenizer_cache(other) / "tokenizer.json").exists()
    off, _ = _tokenizer(tmp_path / "c", "training.seed=4444", "tokenizer.reuse=false")
    assert not tokenizer_cache(off).exists()  # neither read nor written
    assert (tmp_path / "c" / "tokenizer" / "tokenizer.json").exists()
