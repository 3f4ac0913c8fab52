"""Text analysis for the BM25 first stage: lowercase, split, drop stop words, stem.

The pipeline mirrors Lucene's ``EnglishAnalyzer`` closely enough for BM25 baselines:

1. lowercase (``str.lower``, unicode-aware);
2. split into maximal runs of unicode letters and digits (``[^\\W_]+``: like ``\\w+`` but the underscore
   also separates words, so ``"state-of-the-art"`` and ``"foo_bar"`` both split);
3. drop tokens shorter than ``min_length`` characters;
4. drop stop words (by default :data:`LUCENE_ENGLISH_STOPWORDS`, checked *before* stemming);
5. stem with a Snowball stemmer from PyStemmer (``"english"`` is Porter2; ``"porter"`` is the classic
   Porter stemmer Anserini uses).

The configuration is a frozen dataclass; :meth:`Tokenizer.signature` is a stable string that an index stores
so that it can refuse to be queried with a differently configured tokenizer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import Stemmer

__all__ = ["LUCENE_ENGLISH_STOPWORDS", "Tokenizer"]

#: Lucene's ``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`` (33 words), the default stop list of Anserini and
#: Pyserini BM25. ``bm25s.stopwords.STOPWORDS_EN`` is the same list.
LUCENE_ENGLISH_STOPWORDS: frozenset[str] = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
        "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they",
        "this", "to", "was", "will", "with",
    }
)  # fmt: skip

_NAMED_STOPWORDS: dict[str, frozenset[str]] = {"english": LUCENE_ENGLISH_STOPWORDS}
_WORD_RE = re.compile(r"[^\W_]+")
_SIGNATURE_VERSION = "rank1-tokenizer-v1"


@dataclass(frozen=True)
class Tokenizer:
    """A configurable, deterministic English analyzer.

    Attributes:
        lowercase: Lowercase the text before splitting.
        stopwords: ``"english"`` for :data:`LUCENE_ENGLISH_STOPWORDS`, ``None`` to keep every word, or any
            collection of (lowercase) words to drop.
        stemmer: A PyStemmer algorithm name (``"english"`` = Snowball Porter2, ``"porter"``, ...) or ``None``.
        min_length: Tokens with fewer characters than this (before stemming) are dropped.

    Example:
        >>> Tokenizer().tokenize("The runners were running!")
        ['runner', 'were', 'run']
    """

    lowercase: bool = True
    stopwords: str | frozenset[str] | None = "english"
    stemmer: str | None = "english"
    min_length: int = 1
    _stop: frozenset[str] = field(init=False, repr=False, compare=False)
    _stem: Any = field(init=False, repr=False, compare=False)
    _cache: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.stopwords, str):
            if self.stopwords not in _NAMED_STOPWORDS:
                raise ValueError(
                    f"unknown stop word list {self.stopwords!r}; use one of {sorted(_NAMED_STOPWORDS)}, "
                    "None, or a collection of words"
                )
            stop = _NAMED_STOPWORDS[self.stopwords]
        elif self.stopwords is None:
            stop = frozenset()
        else:
            stop = frozenset(self.stopwords)
            object.__setattr__(self, "stopwords", stop)  # hashable and order-free
        if self.stemmer is not None and self.stemmer not in Stemmer.algorithms():
            raise ValueError(f"unknown stemmer {self.stemmer!r}; PyStemmer offers {Stemmer.algorithms()}")
        if self.min_length < 1:
            raise ValueError(f"min_length must be >= 1, got {self.min_length}")
        object.__setattr__(self, "_stop", stop)
        object.__setattr__(self, "_stem", Stemmer.Stemmer(self.stemmer) if self.stemmer else None)
        object.__setattr__(self, "_cache", {})

    def signature(self) -> str:
        """A stable, human-readable description of the configuration.

        Two tokenizers with equal signatures produce identical tokens. A custom stop list is represented by
        the SHA-256 of its sorted words.

        Returns:
            For example ``"rank1-tokenizer-v1;lower=1;split=[^\\W_]+;min=1;stop=english;stem=english"``.
        """
        if isinstance(self.stopwords, str) or self.stopwords is None:
            stop = str(self.stopwords).lower()
        else:
            digest = hashlib.sha256("\n".join(sorted(self._stop)).encode()).hexdigest()[:16]
            stop = f"custom-{len(self._stop)}-{digest}"
        return (
            f"{_SIGNATURE_VERSION};lower={int(self.lowercase)};split={_WORD_RE.pattern};"
            f"min={self.min_length};stop={stop};stem={self.stemmer or 'none'}"
        )

    def _words(self, text: str) -> list[str]:
        """Lowercase, split and filter by length and stop list (no stemming)."""
        if self.lowercase:
            text = text.lower()
        stop, min_len = self._stop, self.min_length
        return [w for w in _WORD_RE.findall(text) if len(w) >= min_len and w not in stop]

    def _stem_words(self, words: list[str]) -> list[str]:
        """Stem ``words`` through the cache; each distinct word is stemmed once per tokenizer."""
        if self._stem is None:
            return words
        cache = self._cache
        missing = list({w for w in words if w not in cache})
        if missing:
            cache.update(zip(missing, self._stem.stemWords(missing)))
        return [cache[w] for w in words]

    def tokenize(self, text: str) -> list[str]:
        """Analyze one text.

        Args:
            text: Any string; empty input gives an empty list.

        Returns:
            The tokens in text order (duplicates kept).
        """
        return self._stem_words(self._words(text))

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        """Analyze many texts; faster than calling :meth:`tokenize` in a loop for large corpora.

        Every distinct surface word is stemmed once (PyStemmer is called in batches on the new words only).

        Args:
            texts: The texts, consumed once.

        Returns:
            One token list per text, in input order.
        """
        word_lists = [self._words(t) for t in texts]
        if self._stem is None:
            return word_lists
        cache = self._cache
        missing = list({w for words in word_lists for w in words if w not in cache})
        if missing:
            cache.update(zip(missing, self._stem.stemWords(missing)))
        return [[cache[w] for w in words] for words in word_lists]
