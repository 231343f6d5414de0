"""Tokenizer builders: WordPiece (BERT/ELECTRA), byte-level BPE (RoBERTa/BART/GPT-2), Unigram (ALBERT/T5).

`build_tokenizer(family, texts, vocab_size, out_dir)` trains, saves (save_pretrained, atomic) and
returns the tokenizer as AutoTokenizer reloads it. See docs/TOKENIZERS.md.
"""

from tokenizer.build import build_tokenizer, tokenizer_kind
from tokenizer.families import FAMILIES, FAMILY_SPECS

__all__ = ["FAMILIES", "FAMILY_SPECS", "build_tokenizer", "tokenizer_kind"]
