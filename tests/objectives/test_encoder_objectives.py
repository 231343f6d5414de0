"""RoBERTa / ALBERT / ELECTRA objectives on real data, without training: word ids, whole-word
masking through the task collators, FULL-SENTENCES packing, SOP balance, ELECTRA's sampling,
labels, gradient isolation and shared embeddings.

Data-side tests use the whole default corpus (> 100k tokens) with tokenizers trained here.
"""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from pipelines.config import load_recipe
from pipelines.data.tokenize import tokenize_documents
from pipelines.errors import LmforgeError
from tasks.base import get_task
from tasks.shared.masking import IGNORE_INDEX, special_mask, word_index

MODEL = ["model.config.hidden_size=64", "model.config.num_hidden_layers=2", "model.config.num_attention_heads=2",
         "model.config.intermediate_size=128", "model.config.hidden_dropout_prob=0",
         "model.config.attention_probs_dropout_prob=0"]
FACTORIZED = [*MODEL, "model.config.embedding_size=32"]  # ALBERT, ELECTRA


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """family -> tokenizer folder, each trained on the whole default corpus (vocab 2000)."""
    from pipelines.data.default_corpus import default_corpus_path
    from pipelines.data.sources import read_sentence_file
    from tokenizer import build_tokenizer

    texts = [s for d in read_sentence_file(default_corpus_path()) for s in d]
    root = tmp_path_factory.mktemp("tok")
    for family in ("roberta", "albert", "bert", "electra"):
        build_tokenizer(family, texts, 2000, root / family, model_max_length=128)
    return root


def task_for(recipe_name, tokenizers, family, tmp_path, *extra):
    recipe = load_recipe(recipe_name, [f"tokenizer.name_or_path={tokenizers / family}", "data.max_seq_length=128",
                                       f"training.output_dir={tmp_path}", *extra])
    task = get_task(recipe.task)(recipe)
    return task, task.load_tokenizer()


def batches(task, examples, size=256, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(examples), size):
        chunk = examples[i:i + size]
        yield chunk, task.collate(chunk, gen)


# --- word ids -----------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["roberta", "albert", "bert"])
def test_word_ids_follow_the_pre_tokenizer_words(tokenizers, family):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizers / family)
    docs = [["The quick brown fox's tail, unbelievably long.", "Sphinx of black quartz!"], ["judge my vow"]]
    plain = tokenize_documents(docs, tok)
    paired = tokenize_documents(docs, tok, word_ids=True)
    assert [[[t for t, _ in s] for s in d] for d in paired] == plain  # the ids are unchanged
    for doc in paired:
        words = [w for s in doc for _, w in s]
        assert words == sorted(words) and words[0] == 0  # numbered through the document
        first_of_second = doc[1][0][1] if len(doc) > 1 else None
        assert first_of_second is None or first_of_second == doc[0][-1][1] + 1  # offset across sentences
        for w in set(words):
            text = tok.decode([t for s in doc for t, x in s if x == w]).strip()
            assert text and " " not in text, (family, text)  # a word id never spans two words
    assert any(len({t for s in d for t, x in s if x == w}) > 1 for d in paired for w in range(5))  # multi-piece


@pytest.mark.parametrize("recipe_name, family, masking", [("roberta-tiny", "roberta", "whole_word"),
                                                           ("albert-tiny", "albert", "ngram"),
                                                           ("bert-tiny", "bert", "whole_word"),
                                                           ("electra-tiny", "electra", "whole_word")])
def test_word_level_masking_never_splits_a_word(tokenizers, tmp_path, recipe_name, family, masking):
    """Through the task's own prepare + collate (packing / pairs / ELECTRA segments, truncation):
    every word is either wholly selected or not at all, on > 100k tokens."""
    task, tok = task_for(recipe_name, tokenizers, family, tmp_path, f"objective.masking={masking}",
                         "data.dupe_factor=1")
    train, _ = task.prepare(tok)
    assert "word_ids" in train[0]
    n_tokens = n_words = split = 0
    for chunk, batch in batches(task, train[:1200]):
        ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(e["input_ids"]) for e in chunk], True, tok.pad_token_id)
        wids = torch.nn.utils.rnn.pad_sequence([torch.tensor(e["word_ids"]) for e in chunk], True, -1)
        specials = special_mask(ids, tok)
        widx = word_index(specials, wids)
        sel = (batch["labels"] != IGNORE_INDEX) & ~specials
        offset = widx.max() + 1
        flat = (widx + offset * torch.arange(len(chunk))[:, None])[~specials]
        size = torch.bincount(flat)
        hit = torch.bincount(flat, weights=sel[~specials].double()).long()
        split += int(((hit > 0) & (hit < size)).sum())
        n_words += int((size > 0).sum())
        n_tokens += int((~specials).sum())
        assert sel.sum() == (batch["labels"] != IGNORE_INDEX).sum()  # specials never selected
    assert n_tokens > 100_000 and n_words < n_tokens
    assert split == 0


def test_token_masking_keeps_examples_small(tokenizers, tmp_path):
    task, tok = task_for("roberta-tiny", tokenizers, "roberta", tmp_path)
    train, _ = task.prepare(tok)
    assert set(train[0]) == {"input_ids"}  # word ids only when a word-level strategy needs them


# --- RoBERTa ----------------------------------------------------------------------------------

def test_roberta_full_sentences_packing_wastes_nothing_but_the_tail(tokenizers, tmp_path):
    from pipelines.data.prepare import documents_for

    task, tok = task_for("roberta-tiny", tokenizers, "roberta", tmp_path)
    train, _ = task.prepare(tok)
    assert all(len(e["input_ids"]) == 128 for e in train)  # no padding anywhere
    inner = [t for e in train for t in e["input_ids"][1:-1]]
    assert all(e["input_ids"][0] == tok.bos_token_id and e["input_ids"][-1] == tok.eos_token_id for e in train)
    docs, _ = documents_for(task.recipe, tok)
    stream = [t for i, d in enumerate(docs) for t in ([tok.sep_token_id] if i else []) + [x for s in d for x in s]]
    assert inner == stream[:len(inner)]  # blocks cross documents, </s> between them
    assert 0 <= len(stream) - len(inner) < 126  # only the last short block is dropped
    assert len(inner) > 100_000


def test_roberta_needs_two_extra_positions(tokenizers, tmp_path):
    from transformers import RobertaForMaskedLM

    task, tok = task_for("roberta-tiny", tokenizers, "roberta", tmp_path, *MODEL, "data.max_seq_length=64",
                         "model.config.max_position_embeddings=65")
    with pytest.raises(LmforgeError, match=r"max_position_embeddings >= 66 .*padding_idx \+ 1 = 2.*got 65"):
        task.build_model(tok)
    task, tok = task_for("roberta-tiny", tokenizers, "roberta", tmp_path, *MODEL, "data.max_seq_length=64",
                         "model.config.max_position_embeddings=66")
    model = task.build_model(tok)
    assert isinstance(model, RobertaForMaskedLM)
    assert model(input_ids=torch.full((1, 64), 5)).logits.shape == (1, 64, len(tok))  # 64 tokens fit
    base = load_recipe("roberta-base")
    assert base.model.config["max_position_embeddings"] == base.data.max_seq_length + 2 == 514
    assert base.training.adam_beta2 == 0.98
    assert base.training.per_device_train_batch_size * base.training.gradient_accumulation_steps == 8192


# --- ALBERT -----------------------------------------------------------------------------------

def test_albert_sop_balance_and_head_wiring(tokenizers, tmp_path):
    """SOP labels are balanced through the task's prepare, and the task's summed losses equal
    AlbertForPreTraining's own (mean MLM + mean SOP with sentence_order_label): the label
    convention (0 = in order) is the head's."""
    from transformers import AlbertForPreTraining

    task, tok = task_for("albert-tiny", tokenizers, "albert", tmp_path, *FACTORIZED, "data.dupe_factor=2")
    train, _ = task.prepare(tok)
    labels = np.array([e["pair_label"] for e in train])
    n = len(labels)
    assert n > 2000 and abs(labels.mean() - 0.5) < 4 * 0.5 / np.sqrt(n)
    model = task.build_model(tok)
    assert isinstance(model, AlbertForPreTraining) and model.config.embedding_size == 32
    assert model.config.num_hidden_groups == 1  # one layer's weights for every layer
    model.eval()  # the SOP head's dropout (classifier_dropout_prob 0.1) would make the two forwards differ
    _, batch = next(batches(task, train[:64]))
    terms, counts = task.loss(model, batch), task.loss_counts(batch)
    ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"], labels=batch["labels"],
                sentence_order_label=batch["pair_label"]).loss
    ours = terms["mlm"] / counts["mlm"] + terms["sop"] / counts["sop"]
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_sop_needs_multi_sentence_documents(tmp_path):
    corpus = tmp_path / "one_sentence_docs.txt"
    corpus.write_text("\n\n".join(f"Document number {i} has only this sentence." for i in range(50)) + "\n")
    recipe = load_recipe("albert-tiny", [f"data.corpus={corpus}", "tokenizer.vocab_size=200",
                                         f"training.output_dir={tmp_path / 'run'}"])
    task = get_task(recipe.task)(recipe)
    with pytest.raises(LmforgeError, match="SOP needs documents of at least 2 sentences"):
        task.prepare(task.load_tokenizer())


# --- ELECTRA ----------------------------------------------------------------------------------

def test_inverse_cdf_sampling_follows_the_softmax():
    from tasks.objectives.electra_rtd import sample_from_logits

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0, 0.5]]).expand(200_000, -1)
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(sample_from_logits(logits, u), minlength=6).numpy()
    p = torch.softmax(logits[0].double(), -1).numpy()
    assert counts[4] == 0  # (almost) zero probability, never drawn
    keep = p > 1e-6
    assert chisquare(counts[keep], p[keep] / p[keep].sum() * counts.sum()).pvalue > 1e-3
    hot = sample_from_logits(logits[:1000], u[:1000], temperature=0.05)  # low temperature -> the argmax
    assert (hot == 0).all()


@pytest.fixture(scope="module")
def electra(tokenizers, tmp_path_factory):
    task, tok = task_for("electra-tiny", tokenizers, "electra", tmp_path_factory.mktemp("electra"), *FACTORIZED)
    train, _ = task.prepare(tok)
    torch.manual_seed(0)
    return task, tok, train, task.build_model(tok)


def test_electra_shares_one_embedding_tensor_and_sizes_the_generator(electra):
    _, _, _, model = electra
    gen, disc = model.generator, model.discriminator
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
        assert getattr(gen.electra.embeddings, name).weight.data_ptr() == \
            getattr(disc.electra.embeddings, name).weight.data_ptr(), name
    assert gen.generator_lm_head.weight.data_ptr() == disc.electra.embeddings.word_embeddings.weight.data_ptr()
    assert gen.config.hidden_size == disc.config.hidden_size // 4 == 16
    assert gen.config.num_hidden_layers == disc.config.num_hidden_layers
    assert gen.config.embedding_size == disc.config.embedding_size == 32
    assert gen.electra.embeddings_project.in_features == 32  # its own projection to its hidden size
    n_shared = sum(p.numel() for p in disc.electra.embeddings.parameters())
    assert sum(p.numel() for p in model.parameters()) == \
        sum(p.numel() for p in gen.parameters()) + sum(p.numel() for p in disc.parameters()) - n_shared


def test_electra_paper_generator_sizes():
    from transformers import AutoConfig

    from tasks.objectives.electra_rtd import generator_config

    for name, (hidden, heads, ffn, emb) in {"electra-small": (64, 1, 256, 128),
                                            "electra-base": (256, 4, 1024, 768)}.items():
        r = load_recipe(name)
        disc = AutoConfig.for_model("electra", **r.model.config)
        gen = generator_config(disc, r.objective["generator_size_divisor"])
        assert (gen.hidden_size, gen.num_attention_heads, gen.intermediate_size, gen.embedding_size) == \
            (hidden, heads, ffn, emb), name
        assert gen.num_hidden_layers == disc.num_hidden_layers == 12


def test_electra_labels_mark_exactly_the_changed_tokens(electra):
    """On > 100k tokens: label 1 iff the sampled token differs from the original. The generator's
    output bias is set to put about half its mass on the most frequent token, so many samples
    equal the original: those positions must be labelled 0."""
    task, tok, train, model = electra
    freq = torch.bincount(torch.tensor([t for e in train for t in e["input_ids"]]), minlength=len(tok))
    freq[tok.all_special_ids] = 0
    common = int(freq.argmax())  # the most frequent word piece
    with torch.no_grad():
        model.generator.generator_lm_head.bias.zero_()
        model.generator.generator_lm_head.bias[common] = float(np.log(len(tok)))
    model.eval()
    n_tokens = n_masked = same = 0
    sampled_common = []
    with torch.no_grad():
        for _, batch in batches(task, train[:1000], size=200):
            out = task._forward(model, batch)
            sel = batch["labels"] != IGNORE_INDEX
            original = torch.where(sel, batch["labels"], batch["input_ids"])
            assert torch.equal(out.fake_input_ids[~sel], original[~sel])  # only masked positions change
            assert torch.equal(out.replaced, (out.fake_input_ids != original).long())
            assert (out.replaced[~sel] == 0).all()
            kept = sel & (out.fake_input_ids == original)
            assert (out.replaced[kept] == 0).all()
            same += int(kept.sum())
            n_masked += int(sel.sum())
            n_tokens += int(batch["attention_mask"].sum())
            sampled_common.append((out.fake_input_ids[sel] == common).float())
    share = float(torch.cat(sampled_common).mean())
    assert n_tokens > 100_000 and same > 200
    assert 0.3 < share < 0.7  # the sampler follows the generator's softmax
    assert 0.13 < n_masked / n_tokens < 0.16


def test_discriminator_loss_sends_no_gradient_to_the_generator(electra):
    task, _, train, model = electra
    model.train()
    model.zero_grad(set_to_none=True)
    _, batch = next(batches(task, train[:32]))
    terms = task.loss(model, batch)
    terms["disc"].backward()
    shared = {p.data_ptr() for p in model.discriminator.parameters()}
    own = [(n, p) for n, p in model.generator.named_parameters() if p.data_ptr() not in shared]
    assert len(own) > 10
    assert all(p.grad is None or not p.grad.any() for _, p in own), [n for n, p in own if p.grad is not None]
    assert model.discriminator.electra.embeddings.word_embeddings.weight.grad.abs().sum() > 0  # shared: learns
    assert model.discriminator.discriminator_predictions.dense.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    task.loss(model, batch)["mlm"].backward()  # the MLM loss does train the generator
    assert all(p.grad is not None for _, p in own)
    assert model.discriminator.discriminator_predictions.dense.weight.grad is None


def test_electra_segments_follow_the_example_builder():
    from tasks.objectives.electra_rtd import electra_segments

    rng = np.random.default_rng(0)
    docs = [[list(range(rng.integers(3, 40))) for _ in range(rng.integers(1, 30))] for _ in range(2000)]
    segments = electra_segments(docs, 128, np.random.default_rng(1))
    assert all(len(a) + len(b) + (3 if b else 2) <= 128 and a for a, b in segments)
    full = [not b for a, b in segments if len(a) + len(b) > 100]  # several sentences: split unless the 10 % coin
    assert len(full) > 3000 and 0.07 < np.mean(full) < 0.13
    lengths = np.array([len(a) + len(b) for a, b in segments])
    assert (lengths > 100).mean() > 0.5  # most examples fill the target length


def test_electra_needs_the_electra_family(tmp_path):
    # caught when the recipe loads (ELECTRA's embedding_size is no BertConfig field) or, failing
    # that, by the task itself
    with pytest.raises(LmforgeError, match="embedding_size: not a field of BertConfig|electra-rtd needs model.family"):
        recipe = load_recipe("electra-tiny", ["model.family=bert", f"training.output_dir={tmp_path}"])
        get_task(recipe.task)(recipe)


# --- replaced token detection on another family (ModernBERT: modernbert-electra-cram) -----------

MODERN = ["model.config.hidden_size=32", "model.config.num_attention_heads=2", "model.config.intermediate_size=48"]


@pytest.fixture(scope="module")
def modern_rtd(tokenizers, tmp_path_factory):
    task, tok = task_for("modernbert-electra-cram", tokenizers, "bert", tmp_path_factory.mktemp("modern"), *MODERN)
    train, _ = task.prepare(tok)
    torch.manual_seed(0)
    return task, tok, train, task.build_model(tok)


def test_modernbert_rtd_shares_embeddings_with_a_one_layer_generator(modern_rtd):
    _, _, _, model = modern_rtd
    gen, disc = model.generator, model.discriminator
    assert type(gen).__name__ == "ModernBertForMaskedLM" and type(disc).__name__ == "ModernBertForTokenClassification"
    assert disc.config.num_labels == 1 and disc.classifier.out_features == 1
    assert gen.model.embeddings is disc.model.embeddings  # token table and its norm, one module
    assert gen.decoder.weight.data_ptr() == disc.model.embeddings.tok_embeddings.weight.data_ptr()
    assert (gen.config.num_hidden_layers, disc.config.num_hidden_layers) == (1, 4)
    assert gen.config.hidden_size == disc.config.hidden_size == 32
    assert len(gen.config.layer_types) == 1
    n_shared = sum(p.numel() for p in disc.model.embeddings.parameters())
    assert sum(p.numel() for p in model.parameters()) == \
        sum(p.numel() for p in gen.parameters()) + sum(p.numel() for p in disc.parameters()) - n_shared


def test_modernbert_rtd_reads_full_rows_and_labels_the_changed_tokens(modern_rtd):
    """full_sentences packing: every row is 128 tokens of packed documents; the discriminator's labels
    are 1 exactly where the sampled token differs from the original, over > 100k tokens."""
    task, tok, train, model = modern_rtd
    assert len(train) > 800 and all(len(train[i]["input_ids"]) == 128 for i in range(0, len(train), 97))
    model.eval()
    n_tokens = n_masked = replaced = 0
    with torch.no_grad():
        for _, batch in batches(task, train[:1000], size=200):
            assert "token_type_ids" in batch  # collated, and not passed to ModernBERT (it reads none)
            out = task._forward(model, batch)
            sel = batch["labels"] != IGNORE_INDEX
            original = torch.where(sel, batch["labels"], batch["input_ids"])
            assert out.discriminator_logits.shape == batch["input_ids"].shape
            assert torch.equal(out.fake_input_ids[~sel], original[~sel])
            assert torch.equal(out.replaced, (out.fake_input_ids != original).long())
            n_masked, n_tokens = n_masked + int(sel.sum()), n_tokens + int(batch["attention_mask"].sum())
            replaced += int(out.replaced.sum())
    assert n_tokens > 100_000 and 0.13 < n_masked / n_tokens < 0.16
    assert 0.9 < replaced / n_masked <= 1.0  # an untrained generator over 2,000 pieces rarely draws the original


def test_modernbert_rtd_gradients_stay_apart(modern_rtd):
    task, _, train, model = modern_rtd
    model.train()
    model.zero_grad(set_to_none=True)
    _, batch = next(batches(task, train[:16]))
    task.loss(model, batch)["disc"].backward()
    shared = {p.data_ptr() for p in model.discriminator.parameters()}
    own = [p for p in model.generator.parameters() if p.data_ptr() not in shared]
    assert len(own) > 5 and all(p.grad is None or not p.grad.any() for p in own)
    assert model.discriminator.classifier.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    task.loss(model, batch)["mlm"].backward()
    assert all(p.grad is not None for p in own) and model.discriminator.classifier.weight.grad is None
    model.zero_grad(set_to_none=True)


def test_modernbert_rtd_export_fine_tunes_and_the_generator_reloads(modern_rtd, tmp_path):
    """`final` is the discriminator's encoder: sequence classification loads every encoder weight from
    it; `final-generator` reloads with the same MLM logits."""
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    task, tok, train, model = modern_rtd
    final, gen_dir = task.export(model, tok, tmp_path / "final")
    assert gen_dir.name == "final-generator"
    clf, info = AutoModelForSequenceClassification.from_pretrained(final, num_labels=2, output_loading_info=True)
    assert not [k for k in info["missing_keys"] if k.startswith("model.")], info["missing_keys"]
    assert torch.equal(clf.model.layers[3].mlp.Wo.weight, model.discriminator.model.layers[3].mlp.Wo.weight)
    gen = AutoModelForMaskedLM.from_pretrained(gen_dir).eval()
    model.generator.eval()
    ids = torch.tensor([train[0]["input_ids"][:32]])
    with torch.no_grad():
        assert torch.allclose(gen(input_ids=ids).logits, model.generator(input_ids=ids).logits, atol=1e-5)


def test_a_narrower_generator_without_an_embedding_projection_is_refused(tokenizers, tmp_path):
    task, tok = task_for("modernbert-electra-cram", tokenizers, "bert", tmp_path, *MODERN,
                         "objective.generator_size_divisor=2")
    with pytest.raises(LmforgeError, match="has no embedding projection; set generator_size_divisor: 1"):
        task.build_model(tok)


@pytest.mark.parametrize("setting, message", [("objective.packing=rows", "packing 'rows' is not one of"),
                                              ("objective.generator_num_layers=0", "generator_num_layers must be")])
def test_rtd_settings_are_checked_before_any_work(tmp_path, setting, message):
    recipe = load_recipe("modernbert-electra-cram", [setting, f"training.output_dir={tmp_path}"])
    with pytest.raises(LmforgeError, match=message):
        get_task(recipe.task)(recipe)
