"""Folding text to what a reader sees, for the content lint.

Two folds, both pure and idempotent:

* ``fold_char``: case- and diacritics-insensitive, script-preserving. "Ｔéśt" reads "test", "тест"
  stays Cyrillic so words of other languages keep matching their own word lists.
* ``latin_char`` + ``unleet``: the Latin skeleton, for words a person typed to look like Latin
  while dodging a filter: Cyrillic and Greek look-alikes ("tеst" with a Cyrillic е, "ТЕЅТ"),
  small capitals, Cherokee capitals and regional-indicator letters become the Latin letter they
  look like; fullwidth forms, mathematical alphanumerics, superscripts and ligatures are already
  handled by NFKD in ``fold_char``. Unicode's confusables.txt is the model, but the table below
  is curated by hand: only characters that really pass for a Latin letter in a phone's font, so a
  Greek or Russian word never turns into an English one by accident.

Leetspeak digits ("t3st", "7est", "te$t") are a separate, context-dependent step: a digit or
symbol only stands for a letter when a letter follows it, so "t35t" reads "test" while
"Q4", "24/7", "test123" and "100 zł" keep their digits.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["CONFUSABLES", "LEET", "fold_char", "is_mark", "latin_char", "skeleton", "unleet"]

# Letters whose stroke or ligature is not a combining mark, so NFKD leaves them alone.
_SPECIAL_FOLDS: dict[str, str] = {
    "ł": "l", "Ł": "l", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d", "ħ": "h", "Ħ": "h",
    "ŧ": "t", "Ŧ": "t", "ŀ": "l", "Ŀ": "l", "\u0131": "i", "æ": "ae", "Æ": "ae", "œ": "oe",
    "Œ": "oe",
}  # fmt: skip

# Keyed by the original character, before case folding, because the capital and the small letter
# of another script often look like different Latin letters: Greek "Η" is an H but "η" an n,
# "Ν" an N but "ν" a v. Every value is one lowercase ASCII letter, which keeps the fold
# idempotent and one character wide.
CONFUSABLES: dict[str, str] = {
    # Cyrillic capitals
    "А": "a", "В": "b", "Е": "e", "Ѕ": "s", "І": "i", "Ї": "i", "Ј": "j", "К": "k", "М": "m",
    "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t", "У": "y", "Х": "x", "Ү": "y", "Һ": "h",
    "Ԛ": "q", "Ԝ": "w", "Ӏ": "l", "Ь": "b",
    # Cyrillic small letters
    "а": "a", "в": "b", "г": "r", "е": "e", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "к": "k",
    "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x",
    "ь": "b", "ү": "y", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l",
    # Greek capitals
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n",
    "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "Ϲ": "c", "Ϳ": "j",
    # Greek small letters
    "α": "a", "β": "b", "γ": "y", "ε": "e", "ϵ": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "զ": "q", "ց": "g",
    # Latin small capitals and other IPA letters that NFKD leaves alone
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j",
    "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t",
    "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ȷ": "j",
    # Cherokee capitals, which copy Latin capitals almost exactly
    "Ꭺ": "a", "Ᏼ": "b", "Ꮯ": "c", "Ꭼ": "e", "Ꮐ": "g", "Ꮋ": "h", "Ꭻ": "j", "Ꮶ": "k", "Ꮮ": "l",
    "Ꮇ": "m", "Ꮲ": "p", "Ꮢ": "r", "Ꮪ": "s", "Ꭲ": "t", "Ꮩ": "v", "Ꮃ": "w",
    # Regional indicators render as letters when they do not pair into a flag
    **{chr(0x1F1E6 + offset): chr(ord("a") + offset) for offset in range(26)},
}  # fmt: skip

# Digits and symbols that stand for letters in leetspeak. "1" is "i" rather than "l": test words
# have far more i's ("testing", "internal") than l's.
LEET: dict[str, str] = {
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a",
    "$": "s", "€": "e", "+": "t",
}  # fmt: skip


def is_mark(ch: str) -> bool:
    """A combining mark: an accent that belongs to the letter before it."""
    return unicodedata.category(ch) in ("Mn", "Me")


@lru_cache(maxsize=16384)
def fold_char(ch: str) -> str:
    """One character, case- and diacritics-folded; may be empty or longer than one character."""
    special = _SPECIAL_FOLDS.get(ch)
    if special is not None:
        return special
    # Format characters (zero-width space, soft hyphen, joiners) are invisible to the reader, so
    # "te\u200bst" must still read as "test".
    if unicodedata.category(ch) == "Cf":
        return ""
    # NFKD also folds full-width letters, mathematical alphanumerics and ligatures, which people
    # paste to dodge filters; the second NFKD catches the few characters whose case-folded form
    # is precomposed again.
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", ch).casefold())
    # A decomposition can end in a letter the special folds take further (ǿ → ø → o, ℏ → ħ →
    # h): those parts are folded too, so folding twice changes nothing.
    return "".join(_SPECIAL_FOLDS.get(part, part) for part in decomposed if not is_mark(part))


@lru_cache(maxsize=16384)
def latin_char(ch: str) -> str:
    """``fold_char``, then look-alike letters of other scripts replaced by their Latin twin."""
    direct = CONFUSABLES.get(ch)
    if direct is not None:
        return direct
    return "".join(CONFUSABLES.get(part, part) for part in fold_char(ch))


def _is_letter(ch: str) -> bool:
    return ch.isalpha()


def unleet(text: str) -> str:
    """Read leetspeak digits and symbols as letters where a letter follows them.

    "t3st" and "7est" become "test" while "Q4", "5G", "24/7" and "test123" keep their digits; a
    digit that ends a word ("tes7") is left to the word patterns, which know which letter it
    would stand for. Works on folded text and keeps its length, so positions still map back to
    the original. Scanning from the end lets a run like "35" in "t35t" become "es": each
    character sees its successor already read.
    """
    if not any(ch in LEET for ch in text):
        return text
    out = list(text)
    for index in range(len(out) - 2, -1, -1):
        letter = LEET.get(out[index])
        if letter is not None and _is_letter(out[index + 1]):
            out[index] = letter
    return "".join(out)


def skeleton(text: str) -> str:
    """The Latin skeleton of a text: what a Latin reader would take it to spell."""
    return unleet("".join(latin_char(ch) for ch in text))
