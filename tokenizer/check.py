"""Does a reloaded tokenizer behave exactly like the one we trained? (used by build.py and the tests)

transformers 5 family classes rebuild their normalizer/pre-tokenizer/decoder from their own
recipe on reload, so a saved pipeline can silently change; this compares the two on text chosen
to hit every normalization path (accents, case, CJK, emoji, digits, punctuation, whitespace runs).
"""

from __future__ import annotations

VARIED_SAMPLE: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "HELLO World! Ünïcödé façade, naïve café — résumé; Ångström.",
    "Numbers: 3.14159, 1,000,000 and 42nd; dates 2024-01-31; phone +1 (555) 010-9999.",
    "Emoji 😀🎉👍🏽 and flags 🇫🇷; math ∑ x² ≤ ∞; arrows → ⇒.",
    "中文字符测试，日本語のテキスト、한국어 문장.",
    "Punctuation!!! ??? ... ``quoted'' \"double\" 'single' (parens) [brackets] {braces} <angle>",
    "  leading spaces, multiple   spaces\tand\ttabs\nnew lines\r\n  trailing  ",
    "Ligatures ﬁ ﬂ, full-width ＡＢＣ１２３, superscript ² ³, roman Ⅻ, ellipsis …",
    "email me@example.com, url https://example.org/a?b=c&d=e#f, path C:\\temp\\x.txt",
    "don't can't won't it's O'Neil's rock'n'roll",
    "Ελληνικά κείμενο, русский текст, עברית, العربية, हिन्दी",
    "x",
    "",
)

_ROLES = ("pad_token_id", "unk_token_id", "cls_token_id", "sep_token_id", "mask_token_id",
          "bos_token_id", "eos_token_id")


def encoding_differences(a, b, texts=VARIED_SAMPLE) -> list[str]:
    """Human-readable differences between tokenizers `a` and `b` (empty list = identical).

    Compares every returned field (input_ids, token_type_ids, attention_mask, and which fields
    exist) for single and pair inputs, with and without special tokens; decoding with and without
    skip_special_tokens; the special-token ids; model_max_length.
    """
    diffs = []
    for role in _ROLES + ("model_max_length",):
        if getattr(a, role, None) != getattr(b, role, None):
            diffs.append(f"{role}: {getattr(a, role, None)!r} != {getattr(b, role, None)!r}")
    if a.all_special_ids != b.all_special_ids or len(a) != len(b):
        diffs.append(f"special ids / size: {a.all_special_ids} ({len(a)}) != {b.all_special_ids} ({len(b)})")
    pairs = [(t, None) for t in texts] + [(t, u) for t, u in zip(texts, texts[1:])]
    for first, second in pairs:
        for specials in (True, False):
            ea = a(first, second, add_special_tokens=specials)
            eb = b(first, second, add_special_tokens=specials)
            if dict(ea) != dict(eb):
                diffs.append(f"encode({first!r}, {second!r}, specials={specials}): {dict(ea)} != {dict(eb)}")
                continue
            for skip in (True, False):
                da = a.decode(ea["input_ids"], skip_special_tokens=skip)
                db = b.decode(ea["input_ids"], skip_special_tokens=skip)
                if da != db:
                    diffs.append(f"decode({first!r}, skip={skip}): {da!r} != {db!r}")
    return diffs
