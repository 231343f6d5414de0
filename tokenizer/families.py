"""The family table: which tokenizer each model family gets, its special tokens and templates.

One row per family, read by tokenizer/build.py. The special tokens are listed in id order and
take the first ids of the vocabulary (the layout of the released checkpoints), except T5's
sentinels, which real T5 appends at the END (`<extra_id_0>` has the highest id).

GPT-2 decision: the released GPT-2 has no pad token and `<|endoftext|>` doubles as bos/eos/unk.
We keep that, but add a dedicated `<pad>` (id 1) instead of reusing `<|endoftext|>` as pad:
collators (DataCollatorForLanguageModeling with mlm=False, DataCollatorWithPadding + label
masking) set labels to -100 wherever input == pad_token_id, so pad == eos would silently stop
the model from learning to emit `<|endoftext|>` at document ends. `GPT2ForSequenceClassification`
also needs a pad id distinct from real tokens to find the last token of each row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

T5_SENTINELS = 100


@dataclass(frozen=True)
class FamilySpec:
    kind: str  # wordpiece | bpe | unigram
    specials: tuple[str, ...]  # in id order, ids 0..n-1
    roles: dict[str, str]  # transformers special-token attribute -> token
    # TemplateProcessing strings; "roberta" = RobertaProcessing (<s> A </s></s> B </s>); None = no specials
    single: str | None
    pair: str | None
    tokenizer_class: str  # the class AutoTokenizer should load (if the reload check passes)
    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    lowercase: bool = False
    extra_specials: tuple[str, ...] = field(default=())  # appended after the learned vocab (T5 sentinels)

    @property
    def n_special(self) -> int:
        return len(self.specials) + len(self.extra_specials)


_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_BERT_ROLES = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
               "mask_token": "[MASK]"}
_BERT_SINGLE = "[CLS] $A [SEP]"
_BERT_PAIR = "[CLS] $A [SEP] $B:1 [SEP]:1"  # segment B (and its [SEP]) get token_type_id 1
_WITH_TYPES = ("input_ids", "token_type_ids", "attention_mask")

_ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
_ROBERTA_ROLES = {"bos_token": "<s>", "cls_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>",
                  "sep_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"}

FAMILY_SPECS: dict[str, FamilySpec] = {
    "bert": FamilySpec("wordpiece", _BERT_SPECIALS, _BERT_ROLES, _BERT_SINGLE, _BERT_PAIR,
                       "BertTokenizer", _WITH_TYPES, lowercase=True),
    "electra": FamilySpec("wordpiece", _BERT_SPECIALS, _BERT_ROLES, _BERT_SINGLE, _BERT_PAIR,
                          "ElectraTokenizer", _WITH_TYPES, lowercase=True),
    "roberta": FamilySpec("bpe", _ROBERTA_SPECIALS, _ROBERTA_ROLES, "roberta", "roberta", "RobertaTokenizer"),
    # ModernBERT (Warner et al. 2024: pre-LN, rotary positions, GeGLU, no biases) reads no token types;
    # BERT's lower-cased WordPiece with [CLS]/[SEP] (the released model's BPE is a separate choice)
    "modernbert": FamilySpec("wordpiece", _BERT_SPECIALS, _BERT_ROLES, _BERT_SINGLE, _BERT_PAIR,
                             "BertTokenizer", lowercase=True),
    # RoBERTa with pre-LayerNorm blocks (fairseq's --encoder-normalize-before): RoBERTa's tokenizer
    "roberta-prelayernorm": FamilySpec("bpe", _ROBERTA_SPECIALS, _ROBERTA_ROLES, "roberta", "roberta",
                                       "RobertaTokenizer"),
    "bart": FamilySpec("bpe", _ROBERTA_SPECIALS, _ROBERTA_ROLES, "roberta", "roberta", "BartTokenizer"),
    "gpt2": FamilySpec("bpe", ("<|endoftext|>", "<pad>"),
                       {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                        "unk_token": "<|endoftext|>", "pad_token": "<pad>"}, None, None, "GPT2Tokenizer"),
    # ALBERT: bos/eos are [CLS]/[SEP] in the released tokenizer; lowercased + accents stripped.
    "albert": FamilySpec("unigram", ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"),
                         {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "[CLS]",
                          "sep_token": "[SEP]", "mask_token": "[MASK]", "bos_token": "[CLS]",
                          "eos_token": "[SEP]"},
                         _BERT_SINGLE, _BERT_PAIR, "AlbertTokenizer", _WITH_TYPES, lowercase=True),
    "t5": FamilySpec("unigram", ("<pad>", "</s>", "<unk>"),
                     {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
                     "$A </s>", "$A </s> $B </s>", "T5Tokenizer",
                     extra_specials=tuple(f"<extra_id_{i}>" for i in range(T5_SENTINELS - 1, -1, -1))),
}

FAMILIES: tuple[str, ...] = tuple(FAMILY_SPECS)
