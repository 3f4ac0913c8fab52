"""BM25 first stage: analysis (:mod:`.tokenize`), index and search (:mod:`.bm25`), on-disk format
(:mod:`.store`) and the corpus-to-run pipeline behind ``rank1 retrieve`` (:mod:`.pipeline`).

Example:
    >>> from rank1.records import Document
    >>> index = BM25Index.build([Document("d1", "cats purr"), Document("d2", "dogs bark")], progress=False)
    >>> index.search("a purring cat", k=1)[0][0]
    'd1'
"""

from rank1.retrieve.bm25 import BM25Index, BM25Params, corpus_fingerprint
from rank1.retrieve.pipeline import RetrieveResult, retrieve
from rank1.retrieve.store import IndexFormatError, TokenizerMismatchError
from rank1.retrieve.tokenize import LUCENE_ENGLISH_STOPWORDS, Tokenizer

__all__ = [
    "LUCENE_ENGLISH_STOPWORDS",
    "BM25Index",
    "BM25Params",
    "IndexFormatError",
    "RetrieveResult",
    "Tokenizer",
    "TokenizerMismatchError",
    "corpus_fingerprint",
    "retrieve",
]
