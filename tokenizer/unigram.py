"""Unigram LM tokenizer (ALBERT, T5): SentencePiece-style pieces with the metaspace "▁" word marker.

Two trainers, same result format (a `tokenizers.Tokenizer` with a Unigram model):
- `sentencepiece` (default, `trainer="sentencepiece"`): the trainer ALBERT and T5 were built
  with. It is also the only one that scales: tokenizers' UnigramTrainer (0.23) panics with
  "likelihood is NAN" on our 15 MB benchmark corpus and is usually slower below that
  (docs/TOKENIZERS.md has the timings), and a silent switch of trainer at some size would make
  the vocabulary depend on corpus size in a second way. The trained pieces and scores are
  copied into a `tokenizers` Unigram model, together with sentencepiece's `nmt_nfkc` normalization table (the
  `Precompiled` normalizer, as in the released ALBERT/T5 tokenizer.json files).
- `tokenizers` (`trainer="tokenizers"`): tokenizers' UnigramTrainer, for small corpora only.

The pipeline is what `AlbertTokenizer` / `T5Tokenizer` rebuild on reload (transformers 5 keeps
only the vocab, post-processor and the Precompiled charsmap of a saved folder):
ALBERT = `` '' -> ", NFKD + strip accents, lowercase, nmt_nfkc; T5 = nmt_nfkc only; both split
on whitespace and prefix every word with "▁" (so whitespace runs collapse: a Unigram round trip
restores words, not exact spacing). Characters outside the vocabulary become <unk>, as in T5.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

MAX_PIECE_LENGTH = 16  # sentencepiece's default; both trainers use it
# Lines longer than sentencepiece's default 4192 bytes would be dropped silently; allow long paragraphs.
MAX_SENTENCE_BYTES = 1 << 16
# sentencepiece splits the EM work into num_threads parts, and the vocabulary depends on that
# split (measured: 1, 2 and 8 threads give three different vocabularies of the default corpus),
# not on the machine's cores. A fixed count keeps a recipe's tokenizer identical on every machine;
# 16 costs nothing on 2 cores (1.9 s vs 1.7 s single-threaded at 8k) and uses bigger machines.
NUM_THREADS = 16


def family_normalizers(lowercase: bool) -> list:
    """ALBERT's text normalization before nmt_nfkc (lowercase=True); T5 has none (lowercase=False)."""
    if not lowercase:
        return []
    return [normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(),
            normalizers.StripAccents(), normalizers.Lowercase()]


def unigram_pipeline(vocab: list[tuple[str, float]], unk_id: int, lowercase: bool,
                     charsmap: bytes | None) -> Tokenizer:
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    steps = family_normalizers(lowercase) + ([normalizers.Precompiled(charsmap)] if charsmap else [])
    if steps:
        tok.normalizer = normalizers.Sequence(steps)
    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return tok


def _sentencepiece_pieces(texts: Iterable[str], n_pieces: int) -> tuple[list[tuple[str, float]], bytes]:
    """(normal pieces with scores, nmt_nfkc charsmap) from sentencepiece's unigram trainer."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    model = io.BytesIO()
    # sentencepiece keeps its own <unk> at id 0 (it requires one); we drop it and use the family's.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, model_type="unigram", vocab_size=n_pieces + 1,
        normalization_rule_name="nmt_nfkc", unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        hard_vocab_limit=False,  # a small corpus gives a smaller vocab instead of an error
        max_sentence_length=MAX_SENTENCE_BYTES, max_sentencepiece_length=MAX_PIECE_LENGTH,
        num_threads=NUM_THREADS, minloglevel=2)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    normal = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
    pieces = [(p.piece, p.score) for p in proto.pieces if p.type == normal]
    return pieces, proto.normalizer_spec.precompiled_charsmap


def train_unigram(texts: Iterable[str], vocab_size: int, specials: list[str], unk_token: str,
                  lowercase: bool, trainer: str = "sentencepiece") -> Tokenizer:
    """Train Unigram on `texts`; `specials` take ids 0..len-1 (scores 0), learned pieces follow."""
    unk_id = specials.index(unk_token)
    if trainer == "tokenizers":
        tok = unigram_pipeline([(unk_token, 0.0)], 0, lowercase, _nmt_nfkc_charsmap())
        tok.train_from_iterator(texts, trainer=trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=list(specials), unk_token=unk_token,
            max_piece_length=MAX_PIECE_LENGTH, show_progress=False))
        return tok
    if trainer != "sentencepiece":
        raise ValueError(f"unknown unigram trainer {trainer!r}")
    # sentencepiece applies nmt_nfkc itself; the family's pre-normalization (ALBERT) is applied here.
    pre = normalizers.Sequence(family_normalizers(lowercase)) if lowercase else None
    stream = (pre.normalize_str(t) for t in texts) if pre else texts
    pieces, charsmap = _sentencepiece_pieces(stream, vocab_size - len(specials))
    vocab = [(s, 0.0) for s in specials] + [p for p in pieces if p[0] not in specials]
    return unigram_pipeline(vocab, unk_id, lowercase, charsmap)


_CHARSMAP: list[bytes] = []


def _nmt_nfkc_charsmap() -> bytes:
    """sentencepiece's compiled nmt_nfkc table (no API exposes it except a trained model's proto)."""
    if not _CHARSMAP:
        sample = ["a b c d e f g h i j k l m n o p q r s t u v w x y z"] * 4
        _CHARSMAP.append(_sentencepiece_pieces(sample, 30)[1])
    return _CHARSMAP[0]
