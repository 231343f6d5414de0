"""BART denoising pretraining (Lewis et al. 2019) on AutoModelForSeq2SeqLM (BartForConditionalGeneration).

Examples are runs of whole sentences of one document, at most data.max_seq_length - 2 tokens
(tasks.packing.pack_sentences, fairseq's complete_doc). The collator corrupts them afresh per
batch (tasks/denoising.py: text infilling 30 % with Poisson(3) spans and full sentence
permutation, the final BART setting; token deletion and document rotation off by default) and
the decoder reconstructs the original <s> text </s>.

Special ids follow facebook/bart-base: the decoder starts from </s> (fairseq's prev_output_tokens),
generate() forces <s> as the first token and </s> at the maximum length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pipelines.errors import LmforgeError
from tasks.base import register
from tasks.mlm import documents_for
from tasks.seq2seq_pretraining import Seq2SeqPretraining


@dataclass
class DenoisingParams:
    mask_ratio: float = 0.3  # share of tokens covered by infilling spans
    poisson_lambda: float = 3.0  # mean infilling span length
    permute_sentence_ratio: float = 1.0  # share of sentences shuffled
    deletion_ratio: float = 0.0  # share of tokens deleted
    rotate_ratio: float = 0.0  # probability of rotating the document


@register("bart-denoising")
class BartDenoising(Seq2SeqPretraining):
    Params = DenoisingParams
    loss_weights = {"denoising": 1.0}
    tokenizer_kinds = ("bpe", "wordpiece", "unigram")  # any kind with bos, eos, pad and mask tokens

    def __init__(self, recipe):
        super().__init__(recipe)
        from tasks.denoising import BartNoise

        self.noise = BartNoise(**asdict(self.params)).check(f"recipe '{recipe.name}', section 'objective'")

    def decoder_start_id(self, tokenizer) -> int:
        return tokenizer.eos_token_id

    def prepare(self, tokenizer):
        from tasks.packing import pack_sentences

        missing = [n for n in ("bos_token", "eos_token", "pad_token", "mask_token") if getattr(tokenizer, n) is None]
        if missing:
            raise LmforgeError(f"recipe '{self.recipe.name}': task 'bart-denoising' needs a tokenizer with "
                               f"{', '.join(missing)}")
        self.tokenizer = tokenizer
        width = self.recipe.data.max_seq_length - 2  # room for <s> ... </s>
        train, held = documents_for(self.recipe, tokenizer)
        return pack_sentences(train, width), pack_sentences(held, width)

    def collate(self, examples, generator):
        from tasks.denoising import bart_denoising_batch

        tok = self.tokenizer
        batch = bart_denoising_batch(examples, tok.bos_token_id, tok.eos_token_id, tok.mask_token_id,
                                     tok.pad_token_id, self.recipe.data.max_seq_length, generator, self.noise)
        return self.with_decoder_inputs(batch)

    def build_model(self, tokenizer):
        return self.build_seq2seq(tokenizer, generation={"forced_bos_token_id": tokenizer.bos_token_id,
                                                         "forced_eos_token_id": tokenizer.eos_token_id},
                                  bos_token_id=tokenizer.bos_token_id, forced_eos_token_id=tokenizer.eos_token_id)
