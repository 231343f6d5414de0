"""WordPiece (BERT, ELECTRA): train a `tokenizers` WordPiece model with BERT's exact pipeline.

The pipeline is the one `transformers.BertTokenizer` rebuilds when it reloads a folder
(BertNormalizer: clean text, split CJK chars, lowercase + strip accents; BertPreTokenizer;
WordPiece decoder with "##"), so a saved tokenizer reloads under BertTokenizer unchanged.
Post-processor (the [CLS] A [SEP] B [SEP] template) is added by tokenizer/build.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

# BERT's alphabet limit: with 1000 initial characters, rare symbols (emoji, most CJK) become [UNK]
# instead of eating vocabulary slots; the original google-research vocab did the same.
LIMIT_ALPHABET = 1000


def wordpiece_pipeline(vocab: dict[str, int], unk_token: str, lowercase: bool) -> Tokenizer:
    """An (untrained or trained) WordPiece tokenizer with BERT's normalizer/pre-tokenizer/decoder."""
    tok = Tokenizer(models.WordPiece(vocab, unk_token=unk_token, max_input_chars_per_word=100))
    # strip_accents=None: follows `lowercase`, as in the original BERT (uncased strips, cased keeps).
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def train_wordpiece(texts: Iterable[str], vocab_size: int, specials: list[str], unk_token: str,
                    lowercase: bool = True) -> Tokenizer:
    """Train WordPiece on `texts`; `specials` take ids 0..len-1 in the given order."""
    tok = wordpiece_pipeline({}, unk_token, lowercase)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                        limit_alphabet=LIMIT_ALPHABET, continuing_subword_prefix="##",
                                        show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    # The trainer numbers its alphabet and tied merges in hash-map order, which changes from run
    # to run (same tokens, shuffled ids). WordPiece matching is longest-first and ignores ids, so
    # renumbering (specials first, the rest sorted) removes that shuffle. Tied merge counts are
    # still broken in that order, so a few tokens can differ between processes (docs/DESIGN.md).
    vocab = tok.get_vocab()
    rest = sorted(t for t in vocab if t not in specials)
    return wordpiece_pipeline({t: i for i, t in enumerate(list(specials) + rest)}, unk_token, lowercase)
