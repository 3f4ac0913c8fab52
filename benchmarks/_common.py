"""What the benchmark scripts share: data locations, loading a collection subset, and the report header."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from rank1.io import read_qrels, read_rankllm
from rank1.records import Document, Query
from rank1.students import explainer_for

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TREC_DL = {
    "dl19": ("bm25_top100_dl19.json", "qrels.dl19-passage.txt"),
    "dl20": ("bm25_top100_dl20.json", "qrels.dl20-passage.txt"),
}
NEVIR_TEST = SHARED / "nevir" / "derived_test1000_pairs.jsonl"
NEVIR_TRAIN = SHARED / "nevir" / "nevir_mini_train_q1_50_seed42.jsonl"
RESULTS = Path(__file__).resolve().parent / "results"


class Collection(NamedTuple):
    """First-stage candidates of a collection (judged queries only) with their texts and qrels."""

    run: dict[str, dict[str, float]]
    corpus: dict[str, Document]
    topics: dict[str, Query]
    qrels: dict[str, dict[str, int]]


def load_trec_dl(name: str, queries: int = 0) -> Collection:
    """BM25 top-100 candidates of DL19 or DL20 (rank_llm JSON) restricted to judged queries.

    Args:
        name: ``dl19`` or ``dl20``.
        queries: Keep only the first N judged queries in file order (0: all).
    """
    cand_file, qrels_file = TREC_DL[name]
    cands, qrels = read_rankllm(SHARED / "trec_dl" / cand_file), read_qrels(SHARED / "trec_dl" / qrels_file)
    qids = [q for q in cands.run if q in qrels]
    if queries:
        qids = qids[:queries]
    return Collection({q: dict(cands.run[q]) for q in qids}, cands.corpus, cands.topics, qrels)


def top(docs: dict[str, float], k: int) -> list[str]:
    """The ids of the ``k`` best documents of one query's first-stage run (ties: smaller id first)."""
    return [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def command(argv: list[str] | None = None) -> str:
    """The command that ran this script, as ``python -m benchmarks.NAME ARGS`` (run from the repository root).

    Args:
        argv: The arguments (default: this process's).
    """
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    script = ["-m", spec.name] if spec is not None and spec.name else [sys.argv[0]]
    return "python " + shlex.join([*script, *(sys.argv[1:] if argv is None else argv)])


def header() -> dict[str, Any]:
    """The fields every results JSON starts with: the exact command, the date, the machine, its CPU (the flags
    that decide speed) and what ``dtype="auto"`` chose on it."""
    from rank1.hardware import cpu_dtype_choice, describe_cpu

    choice = cpu_dtype_choice()
    return {"command": command(), "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU", "cpu": describe_cpu(),
            "auto_dtype": f"{choice.dtype} ({choice.reason})"}


def write_json(path: str | Path, report: dict[str, Any]) -> None:
    """Write a results file (pretty JSON) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}", flush=True)


def add_engine_arguments(ap: argparse.ArgumentParser, batch_size: int,
                         backends: Sequence[str] = ("transformers", "ctranslate2", "vllm")) -> None:
    """``--backend``, ``--dtype`` and ``--batch-size``: how the benchmark's models run."""
    ap.add_argument("--backend", default="transformers", choices=list(backends))
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch-size", type=int, default=batch_size)


def reasons_through_explainer(model: str) -> str | None:
    """The error to give when ``model`` is asked for a reasoning arm it would hand to its explainer, else None.

    Reasoning with a shipped student that has an explainer (:func:`rank1.students.explainer_for`) is the explainer's
    reasoning blended with the student's direct P(true): an arm measuring it must name the explainer."""
    explainer = explainer_for(model)
    if explainer == model:
        return None
    return f"{model} reasons through its explainer {explainer}: name {explainer} for the reasoning arm"


def add_resume_arguments(ap: argparse.ArgumentParser, out: str, slice_pairs: int) -> None:
    """``--slice-pairs``, ``--no-judge``, ``--store`` and ``--out``: a benchmark that judges through the score store
    and rewrites its JSON (``RESULTS / out`` by default) as it goes, so the same command resumes."""
    from rank1.store import default_store_path

    ap.add_argument("--slice-pairs", type=int, default=slice_pairs,
                    help="rewrite the JSON after about this many judgements")
    ap.add_argument("--no-judge", action="store_true", help="only rewrite the JSON from the store")
    ap.add_argument("--store", default=str(default_store_path()))
    ap.add_argument("--out", default=str(RESULTS / out))


PAIRED = {"nevir-train": r"_q[12]$", "condaqa-flip": r"-(yes|no)-\d+$",
          "negate-statement": r"-s[ab]$", "condaqa-statement": r"-s[ab]$"}
"""Sources whose groups come as NevIR-style pairs (two queries, each with the other's relevant passage as its
trap): the pattern that, removed from a group's qid, leaves the pair's key (``368-3_q1`` / ``368-3_q2``;
``condaqa-449-q10-yes-0`` / ``...-no-3``; ``x-sa`` / ``x-sb``)."""


class DevGroup(NamedTuple):
    """A dev group as :func:`load_groups` reads it: its rule, its relevant passage, and its pair (the group's own
    qid with the :data:`PAIRED` suffix removed; empty for sources that do not come in pairs)."""

    source: str
    positive: str
    pair: str = ""


def load_groups(source: str | Path | Iterable[Any]) -> tuple[dict[str, dict[str, float]], dict[str, Document],
                                                             dict[str, Query], dict[str, DevGroup]]:
    """Training-format groups (``distill.msmarco.Group`` JSONL: relevant passage first; or the groups themselves)
    as a collection to rerank: ``(run, corpus, topics, groups)`` with one query per group (``g{i}``), its passages
    as documents (``g{i}_{j}``), and ``groups[g{i}]`` its :class:`DevGroup`."""
    from distill.msmarco import read_groups

    run: dict[str, dict[str, float]] = {}
    corpus: dict[str, Document] = {}
    topics: dict[str, Query] = {}
    groups: dict[str, DevGroup] = {}
    for i, g in enumerate(read_groups(source) if isinstance(source, (str, Path)) else source):
        qid = f"g{i}"
        topics[qid] = Query(qid, g.query)
        docs = [f"{qid}_{j}" for j in range(len(g.passages))]
        corpus.update((d, Document(d, text)) for d, text in zip(docs, g.passages))
        run[qid] = {d: 0.0 for d in docs}
        pair = re.sub(PAIRED[g.source], "", g.qid) if g.source in PAIRED else ""
        groups[qid] = DevGroup(g.source, docs[g.labels.index(1)], pair)
    return run, corpus, topics, groups


def strict_first(scores: Mapping[str, float], positive: str) -> bool:
    """Whether ``positive`` scores strictly above every other passage of ``scores`` (ties lose)."""
    return all(scores[positive] > s for d, s in scores.items() if d != positive)


def top1_by_source(scores: dict[str, dict[str, float]], groups: dict[str, DevGroup]) -> dict[str, Any]:
    """Share of groups whose relevant passage scores strictly above every other passage, per source and overall.

    Sources that come in pairs (:data:`PAIRED`) also get NevIR's paired accuracy: ``pairs``, and ``paired`` the
    share of pairs whose every group is won (a model blind to the contrast scores 0; on pairs of two two-passage
    groups a coin scores 0.25); the key ``paired`` pools them."""
    hits: dict[str, list[int]] = {}
    pairs: dict[str, dict[str, list[int]]] = {}
    for qid, g in groups.items():
        won = int(strict_first(scores[qid], g.positive))
        hits.setdefault(g.source, []).append(won)
        hits.setdefault("all", []).append(won)
        if g.pair:
            pairs.setdefault(g.source, {}).setdefault(g.pair, []).append(won)
    out: dict[str, Any] = {k: {"groups": len(v), "top1": round(sum(v) / len(v), 4)} for k, v in sorted(hits.items())}
    pooled: list[int] = []
    for source, by in pairs.items():
        both = [int(all(v)) for v in by.values()]
        out[source].update(pairs=len(both), paired=round(sum(both) / len(both), 4))
        pooled += both
    if pooled:
        out["paired"] = {"pairs": len(pooled), "paired": round(sum(pooled) / len(pooled), 4)}
    return out


