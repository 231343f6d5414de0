"""Byte-level BPE (RoBERTa, BART, GPT-2): train a `tokenizers` BPE model with GPT-2's pipeline.

Byte-level: text is mapped to its UTF-8 bytes (each shown as one of 256 printable symbols) before
BPE, and all 256 are in the initial alphabet, so no input ever needs an unknown token and
`decode(encode(x)) == x` for any Unicode string, whitespace runs included. No normalizer: the
model sees the raw text.

add_prefix_space=False, as in GPT-2 and RoBERTa: a word at the very start of a text is encoded
without the leading-space marker ("Hello" -> "Hello", but " Hello" -> "ĠHello"); this is what the
released models do and what makes the round trip exact. GPT-2's regex split (use_regex=True)
keeps words, numbers and punctuation apart. This is exactly the pipeline
`transformers.RobertaTokenizer` / `GPT2Tokenizer` rebuild on reload.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# Pairs seen once are noise (a single typo or hash); GPT-2/RoBERTa-style training drops them.
MIN_FREQUENCY = 2


def train_byte_bpe(texts: Iterable[str], vocab_size: int, specials: list[str]) -> Tokenizer:
    """Train byte-level BPE on `texts`; `specials` take ids 0..len-1, then the 256 bytes, then merges."""
    # fuse_unk=False and no unk_token: byte-level BPE cannot meet an unknown symbol.
    tok = Tokenizer(models.BPE(dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=MIN_FREQUENCY,
                                  special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok
