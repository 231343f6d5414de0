"""Test environment: offline, caches in a temp folder, two threads, helpers for tiny recipes."""

import os
import tempfile
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="lmforge-tests-"))
os.environ.setdefault("LMFORGE_HOME", str(Path.home() / ".cache" / "lmforge"))  # corpus is reusable
os.environ["LMFORGE_PREPARED"] = str(_TMP / "prepared")  # shards of this test session only
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_DATASETS_CACHE"] = str(_TMP / "datasets")
os.environ["WANDB_MODE"] = "offline"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny test models: threads only add sync cost

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# A BERT small enough to train a step in milliseconds; shared by the engine and BERT tests.
TINY_BERT = [
    "model.config.hidden_size=32", "model.config.num_hidden_layers=2", "model.config.num_attention_heads=2",
    "model.config.intermediate_size=64", "model.config.max_position_embeddings=64",
    "tokenizer.vocab_size=1000", "data.max_seq_length=64", "data.max_documents=80", "data.dupe_factor=1",
    "training.mixed_precision=no", "training.per_device_train_batch_size=16", "training.logging_steps=1",
    "training.eval_steps=0", "training.save_steps=0", "training.max_eval_batches=2",
    "training.warmup_steps=2", "training.learning_rate=1e-3",
]


def reset_accelerate():
    """accelerate keeps process-wide singletons; tests that build several Accelerators reset them."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.fixture(autouse=True)
def _fresh_accelerate():
    reset_accelerate()
    yield
    reset_accelerate()


@pytest.fixture
def glue_dir():
    path = SHARED_DATA / "glue"
    if not path.is_dir():
        pytest.skip(f"real GLUE data not found at {path} (only in the lmforge dev environment)")
    return path


def synthetic_glue(root):
    """A tiny SST-2-shaped task whose label is readable from the words (no ../shared needed)."""
    import random

    rng = random.Random(0)
    good, bad = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "wrong"]
    (root / "SST-2").mkdir(parents=True)
    for split, n in (("train", 320), ("dev", 64)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            words = [rng.choice(good if label else bad)] + rng.choices(["the", "value", "object", "is"], k=4)
            rng.shuffle(words)
            rows.append(" ".join(words) + f"\t{label}")
        (root / "SST-2" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


def tiny_bert_checkpoint(folder):
    """A random 2-layer, 32-wide BERT (MLM head) with a 1,000-token WordPiece tokenizer, saved to
    `folder`: a local checkpoint to fine-tune from, without any pretraining."""
    import transformers

    from pipelines.data.default_corpus import default_corpus_path
    from tokenizer import build_tokenizer

    lines = [ln for ln in default_corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()][:2000]
    tok = build_tokenizer("bert", lines, 1000, folder, model_max_length=64)
    transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64)).save_pretrained(folder)
    return folder
