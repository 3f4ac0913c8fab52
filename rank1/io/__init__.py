"""Readers and atomic writers for runs, qrels, topics and corpora.

Every reader streams its file, and every problem with the input raises :class:`InputError`, whose
message is one line naming the file and the line.

Public API (implemented in the sibling modules):

- ``read_run(path) -> dict[str, dict[str, float]]`` and ``iter_run(path) -> Iterator[ScoredDoc]``
- ``write_run(path, run, tag="rank1")`` (atomic; strictly decreasing scores; ties by doc id)
- ``read_qrels(path, fmt="auto") -> dict[str, dict[str, int]]`` (``trec``, ``beir``, ``cranfield``)
- ``read_topics(path, fmt="auto") -> dict[str, Query]`` (``tsv``, ``jsonl``, ``trec``, ``cranfield``,
  ``rankllm``)
- ``iter_corpus(path, fmt="auto") -> Iterator[Document]`` and ``read_corpus(path, fmt="auto") ->
  dict[str, Document]`` (``jsonl``, ``tsv``, ``trec``, ``cranfield``, ``rankllm``)
- ``read_rankllm(path) -> Candidates`` (topics, corpus and run from one rank_llm JSON file)
- ``atomic_write(path)`` context manager
"""

from rank1.io.atomic import atomic_write
from rank1.io.corpus import CORPUS_FORMATS, iter_corpus, read_corpus
from rank1.io.errors import InputError
from rank1.io.qrels import QRELS_FORMATS, iter_qrels, read_qrels
from rank1.io.rankllm import Candidates, read_rankllm
from rank1.io.runs import iter_run, read_run, sort_run, write_run
from rank1.io.topics import TOPICS_FORMATS, read_topics

__all__ = [
    "CORPUS_FORMATS",
    "QRELS_FORMATS",
    "TOPICS_FORMATS",
    "Candidates",
    "InputError",
    "atomic_write",
    "iter_corpus",
    "iter_qrels",
    "iter_run",
    "read_corpus",
    "read_qrels",
    "read_rankllm",
    "read_run",
    "read_topics",
    "sort_run",
    "write_run",
]
