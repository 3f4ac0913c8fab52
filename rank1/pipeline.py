"""File-to-file jobs: what the CLI runs, callable from Python too.

Each job reads its inputs completely (so bad input fails before any model is loaded), does its work, and
writes every output atomically at the end, so an output file is either complete or absent.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rank1.engines.base import JudgeEngine
from rank1.io import InputError, atomic_write, read_corpus, read_rankllm, read_run, read_topics, write_run
from rank1.io.text import iter_lines
from rank1.records import Document, Query, first_missing
from rank1.reranker import Reranker, RerankerConfig, RerankResult
from rank1.sample import SAMPLE_DIR
from rank1.store import ScoreStore

"""The sample collection the project ships (6 queries, 30 passages, qrels)."""


@dataclass(frozen=True)
class RerankInputs:
    """Everything a rerank job reads: a run, and the text of its queries and documents."""

    run: dict[str, dict[str, float]]
    corpus: dict[str, Document]
    topics: dict[str, Query]


def load_inputs(
    run: str | Path | None = None,
    corpus: str | Path | None = None,
    topics: str | Path | None = None,
    candidates: str | Path | None = None,
    corpus_format: str = "auto",
    topics_format: str = "auto",
) -> RerankInputs:
    """Read a run with its corpus and topics, or one rank_llm candidates JSON holding all three.

    Raises:
        ValueError: Neither or both input styles were given.
        rank1.io.InputError: Bad input, naming the file and line.
    """
    if candidates is not None:
        if run or corpus or topics:
            raise ValueError("give either --candidates or --run/--corpus/--topics, not both")
        c = read_rankllm(candidates)
        return RerankInputs(c.run, c.corpus, c.topics)
    if not (run and corpus and topics):
        raise ValueError("--run, --corpus and --topics are all needed (or --candidates)")
    return RerankInputs(
        read_run(run), read_corpus(corpus, fmt=corpus_format), read_topics(topics, fmt=topics_format)
    )


def _run_line(run_path: str | Path, qid: str, docid: str | None = None) -> int | None:
    """The first line of a TREC run file naming ``qid`` (and ``docid``), for error messages."""
    for lineno, line in iter_lines(run_path):
        fields = line.split()
        if fields[:1] == [qid] and (docid is None or fields[2:3] == [docid]):
            return lineno
    return None


def check_inputs(
    inputs: RerankInputs,
    run_path: str | Path | None,
    depth: int,
    corpus_path: str | Path | None = None,
    topics_path: str | Path | None = None,
    candidates: bool = False,
) -> None:
    """Every query of the run has a topic and every document to rerank has a text.

    Args:
        inputs: What was read.
        run_path: The run file (or the candidates file), named in the error.
        depth: How many documents of each query will be reranked.
        corpus_path: The corpus file, named in the error.
        topics_path: The topics file, named in the error.
        candidates: ``run_path`` is a rank_llm file (no line numbers).

    Raises:
        rank1.io.InputError: Naming the run file and line, the query and the document that are missing.
    """

    def fail(message: str, qid: str, docid: str | None = None) -> InputError:
        line = None if candidates or run_path is None else _run_line(run_path, qid, docid)
        return InputError(run_path or "candidates", line, message)

    missing = first_missing(inputs.run, inputs.corpus, inputs.topics, depth)
    if missing is not None:
        qid, docid = missing
        if docid is None:
            raise fail(f"query {qid!r} is not in the topics{f' ({topics_path})' if topics_path else ''}", qid)
        in_corpus = f"the corpus{f' ({corpus_path})' if corpus_path else ''}"
        raise fail(f"document {docid!r} of query {qid!r} is not in {in_corpus}", qid, docid)


def check_options(out: str | Path, traces: str | Path | None, depth: int, chunk_size: int | None, tag: str) -> None:
    """Reject bad job options before any input is read or model loaded.

    Raises:
        ValueError: Naming the option.
    """
    if depth < 1:
        raise ValueError(f"--depth must be at least 1, not {depth}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"--chunk-size must be at least 1, not {chunk_size}")
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"--tag must be one word without whitespace, not {tag!r}")
    for option, path in (("--out", out), ("--traces", traces)):
        if path is not None and Path(path).is_dir():
            raise ValueError(f"{option} {path}: is a directory, not a file")


def write_outputs(result: RerankResult, out: str | Path, traces: str | Path | None, tag: str) -> None:
    """Write the reranked run (and the traces JSONL) atomically."""
    write_run(out, result.scores(), tag=tag)
    if traces is not None:
        with atomic_write(traces) as f:
            for record in result.traces():
                f.write(json.dumps(record, ensure_ascii=False) + "\n")


def rerank_files(
    out: str | Path,
    config: RerankerConfig,
    run: str | Path | None = None,
    corpus: str | Path | None = None,
    topics: str | Path | None = None,
    candidates: str | Path | None = None,
    traces: str | Path | None = None,
    depth: int = 100,
    tag: str = "rank1",
    corpus_format: str = "auto",
    topics_format: str = "auto",
    progress: bool = True,
    cache: str | Path | None = None,
    chunk_size: int | None = None,
    engine: JudgeEngine | None = None,
) -> RerankResult:
    """Rerank a run file and write the new run (and traces). See :func:`load_inputs` for the inputs.

    Options are checked first, then every input is read and checked, then the model is loaded (with a
    ``cache``: only if a pair is missing from it), so bad input fails fast. The outputs are written atomically
    at the end: complete, or absent.

    Args:
        cache: A score store file (:class:`rank1.store.ScoreStore`): stored judgements are reused and new
            ones stored chunk by chunk, so that an interrupted job resumes where it stopped. ``None``: none.
        chunk_size: Pairs judged (and stored) at a time; see :meth:`Reranker.rerank_run`.
        engine: Where the pairs are judged (:func:`rank1.engines.make_engine`); ``None``: in this process.
            With an engine, this process plans and writes but never loads the model.
        (The others as for :func:`load_inputs`, :func:`write_outputs` and :meth:`Reranker.rerank_run`.)
    """
    check_options(out, traces, depth, chunk_size, tag)
    inputs = load_inputs(run, corpus, topics, candidates, corpus_format, topics_format)
    check_inputs(inputs, run or candidates, depth, corpus, topics, candidates=candidates is not None)
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(ScoreStore(cache)) if cache is not None else None
        # Without a cache the model loads now, so that a bad model fails before any judging; with one it loads
        # on the first pair the cache lacks, so a job whose every pair is stored never starts an engine.
        reranker = Reranker(config, load=(engine is None or engine.in_process) and store is None)
        result = reranker.rerank_run(inputs.run, inputs.corpus, inputs.topics, depth=depth, progress=progress,
                                     store=store, chunk_size=chunk_size, engine=engine)
    write_outputs(result, out, traces, tag)
    return result


DEMO_FUSION_WEIGHT = 0.5
"""The BM25 weight of the demo's blended run for a model that recommends none (a shipped student brings its
own, chosen on the MS MARCO dev split)."""


def demo(out_dir: str | Path, config: RerankerConfig, progress: bool = True, explain: bool = True) -> dict[str, Any]:
    """BM25 -> rerank -> evaluate on the bundled sample collection, fully offline.

    It writes the reranked run by P(true) alone (``rank1.trec``) and the same judgements blended with BM25
    (``rank1-fused.trec``, no model call) at ``config``'s fusion weight, or :data:`DEMO_FUSION_WEIGHT` when
    that is 0. The example is the pair with the highest P(true); when the ranking was made in direct mode and
    ``explain`` is on, that one pair is then judged in reasoning mode (``config.budget`` tokens) by the model's
    explainer (:func:`rank1.students.explainer_for`: a shipped reasoning student, else the model itself), so
    the demo shows a reasoning trace for its top pick.

    Returns:
        ``{"bm25": {measure: value}, "rank1": {...}, "fused": {...}, "fusion_weight": w, "result":
        RerankResult, "example": trace dict, "explanation": Judgement or None, "explainer": model name or
        None, "paths": {...}}``.
    """
    from rank1.results import reweight

    from rank1.metrics import evaluate
    from rank1.io import read_qrels
    from rank1.retrieve import retrieve

    out_dir = Path(out_dir)
    corpus, topics, qrels = (SAMPLE_DIR / n for n in ("corpus.jsonl", "topics.tsv", "qrels.txt"))
    first = out_dir / "bm25.trec"
    retrieve(corpus, topics, first, k=10, index_dir=out_dir / "bm25-index", progress=progress)
    reranked, traces = out_dir / "rank1.trec", out_dir / "traces.jsonl"
    weight = config.fusion_weight or DEMO_FUSION_WEIGHT
    inputs = load_inputs(first, corpus, topics)  # read once: ranking, blending and the explanation share them
    with Reranker(replace(config, fusion_weight=0.0)) as reranker:
        result = reranker.rerank_run(inputs.run, inputs.corpus, inputs.topics, depth=10, progress=progress)
    write_outputs(result, reranked, traces, "rank1")
    blended = out_dir / "rank1-fused.trec"
    first_run = inputs.run
    write_run(blended, reweight(result, first_run, weight), tag="rank1-fused")
    measures = ("nDCG@10", "P@1", "RR@10")
    judged = read_qrels(qrels)
    example = max(result.traces(), key=lambda t: (t["score"], t["qid"], t["docid"]))
    explanation, explainer = None, None
    if explain and config.mode == "direct":
        from rank1.students import explainer_for

        explainer = explainer_for(config.model)
        query, doc = inputs.topics[example["qid"]], inputs.corpus[example["docid"]]
        with Reranker(replace(config, model=explainer, mode="reasoning", fusion_weight=0.0)) as reasoner:
            explanation = reasoner.score([(query.full_text, doc.full_text)])[0]
    return {
        "bm25": evaluate(first_run, judged, measures),
        "rank1": evaluate(read_run(reranked), judged, measures),
        "fused": evaluate(read_run(blended), judged, measures),
        "fusion_weight": weight,
        "result": result,
        "example": example,
        "explanation": explanation,
        "explainer": explainer,
        "paths": {"bm25": first, "rank1": reranked, "fused": blended, "traces": traces},
    }
