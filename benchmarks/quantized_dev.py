"""The dev gate a quantized CPU path must pass to become a default (issue 34), for :mod:`benchmarks.quantized`.

Not a test. The issue's quality bar (at most 0.5 nDCG@10 point on DL19 / DL20 and 2 points of NevIR paired
accuracy lost against the exact path) is measured on test collections, which choose nothing. The choice is made
on dev data with the same bar:

* ``msmarco-dev``: nDCG@10 on BM25 top 20 of ``--dev-queries`` MS MARCO dev-split queries (none from DL19/DL20);
  loses at most 0.5 point.
* negation (``contrast-dev``): paired accuracy over the NevIR-style pairs of the contrast dev file (``rank1
  distill contrast --dev-out``: the 50 NevIR train pairs and pairs made from CondaQA and from statements of
  the training queries' dev split; 227 pairs in the file of the shipped model's choice), one unit per pair;
  loses at most 2 points.
* exclusion: top-1 accuracy pooled over the exclusion groups of the same file and the harder ones
  :func:`distill.exclusion_dev.harden` makes of them; loses at most 2 points.

Each against the ``--reference`` variant (the exact path the candidate would replace on the machine: where the
CPU has bf16 units ``dtype auto`` gives ``bfloat16``), with the default model and its counter-query contrast,
point estimates (as the bar is stated) with paired 95% bootstrap intervals beside them. Until 2026-12-07 the
gate was the 50 NevIR train pairs alone, whose interval (one pair is 2 points) spans about 16 points: it could
not tell a 2-point loss from none. How fine this one sees: float32 (an exact path) against bfloat16 lost 0.6 point
on 40 MS MARCO dev queries (past the 0.5 bar) and 0.4 on negation, so at 40 queries the MS MARCO part cannot
tell two exact paths apart; a later gate should ask for more dev queries.

Example (the dev files: ``distill/checkpoints/m15/README.md``)::

    python -m benchmarks.quantized --parts quality --model rank1-0.5b-neg3 --contrast 1.5 --reference bfloat16 \\
        --variants bfloat16,vllm-int8-full --collections msmarco-dev,contrast-dev,exclude-dev,exclude-hard \\
        --contrast-dev dev_cq30_paired.jsonl --exclude-dev dev_cq30_all.jsonl --out quantized_neg3_dev.json
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.ttc_stats import paired

DEV_COLLECTIONS = ("msmarco-dev", "contrast-dev", "exclude-dev", "exclude-hard")
"""Dev collections loaded through :func:`benchmarks.counter.collection` (``nevir-train`` comes with the test
collections' loader)."""

GATE = {"msmarco-dev": (("msmarco-dev",), 0.005),
        "negation": (("contrast-dev",), 0.02),
        "exclusion": (("exclude-dev", "exclude-hard"), 0.02)}
"""Each part of the gate: the collections whose units it pools, and the most it may lose (a fraction)."""


def dev_collection(name: str, dev_queries: int, contrast_dev: str | None, exclude_dev: str | None) -> dict[str, Any]:
    """The dev collection ``name`` in :func:`benchmarks.quantized.quality`'s form: its candidates and ``values``
    (per-unit quality of a scored run)."""
    from benchmarks.counter import collection
    from benchmarks.ttc_stats import quality
    from rank1.scoring import Judgement

    coll = collection(name, argparse.Namespace(limit=0, depth=20, nevir_pairs=0, excluir_items=0,
                                               dev_queries=dev_queries, contrast_dev=contrast_dev,
                                               exclude_dev=exclude_dev))
    run = coll.candidates()

    def values(ranked: dict[str, dict[str, float]]) -> dict[str, float]:
        return quality(coll, {(q, d): Judgement(s) for q, docs in ranked.items() for d, s in docs.items()})

    return {"run": run, "corpus": coll.corpus, "topics": coll.topics, "depth": max(map(len, run.values())),
            "metric": coll.metric, "values": values}


def gate(units: dict[str, dict[str, float]], reference: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    """The gate's verdict for a variant's per-collection ``units`` against the reference's: each part whose
    collections both hold (over the units both hold), and ``passes`` (None while a part is missing; the whole
    verdict None without any)."""
    parts: dict[str, Any] = {}
    for part, (names, most) in GATE.items():
        if not all(n in units and n in reference for n in names):
            continue
        a = {f"{n}/{u}": v for n in names for u, v in units[n].items()}
        b = {f"{n}/{u}": v for n in names for u, v in reference[n].items()}
        if (row := paired(a, b)) is None:
            continue
        common = a.keys() & b.keys()
        diff = sum(a[u] - b[u] for u in common) / len(common)  # unrounded: the bar is read on the exact mean
        parts[part] = {**row, "most_lost": most, "passes": diff >= -most}
    if not parts:
        return None
    return {"parts": parts, "passes": all(p["passes"] for p in parts.values()) if len(parts) == len(GATE) else None}


PART_TITLES = {"msmarco-dev": "MS MARCO dev nDCG@10", "negation": "negation dev paired accuracy",
               "exclusion": "exclusion dev top-1"}


def table(report: dict[str, Any]) -> str:
    """The gate as a markdown table: each reference, then each variant judged against it, per part its pooled
    quality (the difference in points with its 95% interval) and the verdict."""
    from benchmarks.tables import interval, points
    from benchmarks.tables import table as markdown

    variants = report["variants"]
    references = list(dict.fromkeys(r for v in variants.values() for r in v.get("gate", {})))
    rows = []
    for reference in references:
        judged = [(name, v) for name, v in variants.items() if reference in v.get("gate", {})]
        for name, v in [(reference, variants[reference]), *judged]:
            verdict = v.get("gate", {}).get(reference)
            cells = []
            for part, (names, _) in GATE.items():
                if not all(n in v["units"] for n in names):
                    cells.append("not measured")
                    continue
                pooled = [x for n in names for x in v["units"][n].values()]
                cell = f"{sum(pooled) / len(pooled):.4f}"
                if verdict and (p := verdict["parts"].get(part)):
                    cell += f" ({points(p['diff'])} {interval(p['ci95'])}{'' if p['passes'] else ', fails'})"
                cells.append(cell)
            verdict_cell = ("reference" if verdict is None else "incomplete" if verdict["passes"] is None
                            else "passes" if verdict["passes"] else "fails")
            rows.append([f"{name} (`{v['backend']}`)", *cells, verdict_cell])
    units = variants[references[0]]["units"] if references else {}
    counts = {p: sum(len(units.get(n, {})) for n in names) for p, (names, _) in GATE.items()}
    header = ["variant", *(f"{PART_TITLES[p]} ({counts[p]} units, bar -{most * 100:g})"
                           for p, (_, most) in GATE.items()), "gate"]
    return markdown(header, rows)
