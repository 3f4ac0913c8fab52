"""The tables in the docs, rendered from `benchmarks/results/*.json`, so a doc cannot drift from its results.

A markdown file marks a rendered table with a pair of HTML comments::

    <!-- table:NAME -->
    ...rendered by this script, do not edit by hand...
    <!-- /table:NAME -->

`python -m benchmarks.tables` rewrites every marked block in README.md, docs/*.md and benchmarks/README.md;
`python -m benchmarks.tables --check` rewrites nothing and exits 1 if a block differs from what the results
render now (`tests/test_docs.py` runs the check). A table may appear in several files: each copy is rendered.

Model names: the student JSONs name models by the folder they were measured from; `MODELS` maps those
folders to the names rank1 ships them under.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from benchmarks import quantized_dev, ttc_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC_GLOBS = ("README.md", "docs/*.md", "benchmarks/README.md")
BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.DOTALL)

# The folders the student JSONs name, and the shipped model each one is (benchmarks/README.md, "The third round").
MODELS = {
    "rank1-0.5b-labels-v3": "g24c_model",
    "rank1-0.5b-labels": "p4_model_300",
    "rank1-0.5b-reasoning": "model_r2",
}
DL = ("dl19", "dl20")


@cache
def result(name: str) -> dict[str, Any]:
    """One results file, parsed once."""
    return json.loads((RESULTS / name).read_text())


def collections(file: str, model: str) -> dict[str, dict[str, Any]]:
    """The per-collection numbers of `model` (a shipped name, a folder name or a registry name) in `file`."""
    folder = MODELS.get(model, model)
    for key, entry in result(file)["models"].items():
        if Path(key).name in (folder, model) or entry.get("model") in (folder, model):
            return entry["collections"]
    raise KeyError(f"{model} is not in benchmarks/results/{file}")


def num(x: float, digits: int = 4) -> str:
    """A score as the docs write it: fixed digits."""
    return f"{x:.{digits}f}"


def points(x: float, digits: int = 1) -> str:
    """A difference of nDCG@10 in points (x 100), signed."""
    return f"{x * 100:+.{digits}f}"


def interval(ci: list[float], digits: int = 1) -> str:
    """A 95% interval of a difference, in points."""
    return f"[{points(ci[0], digits)}, {points(ci[1], digits)}]"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(cells) + " |" for cells in (header, *rows)]
    lines.insert(1, "|" + "---|" * len(header))
    return "".join(line + "\n" for line in lines)


def dl_ndcg(file: str, model: str, key: str = "ndcg10") -> list[str]:
    """DL19 and DL20 nDCG@10 of a model, each with its gain over BM25 in points."""
    cols = collections(file, model)
    return [f"{num(cols[c][key])} ({points(cols[c][key] - cols[c]['ndcg10_bm25'])})" for c in DL]


def base_top20() -> list[str]:
    """The zero-shot base at BM25 top-20 (benchmarks/quality.py, one file per year)."""
    return [num(result(f"{c}_direct_rank1.json")["collections"][c]["ndcg10_rerank"]) for c in DL]


def nevir(file: str, model: str) -> list[str]:
    """NevIR paired accuracy (pairs right of 200) and the judging rate of the same run."""
    run = collections(file, model)["nevir"]
    return [f"{run['paired_accuracy']:.3f} ({round(run['paired_accuracy'] * 200)} of 200)",
            f"{run['pairs_per_second']:.2f}"]


def negation_student(file: str, arm: str = "new direct") -> list[str]:
    """A student measured by benchmarks/negation.py (its ``arm``): DL top-100 with the gain over BM25 (not
    measured for a reasoning arm), no top-20 run, NevIR paired accuracy over its pairs (1,000), no rate (another
    run); partial: its coverage."""
    rows, bm25 = result(file)["rows"], collections("student_v3_top100.json", "rank1-0.5b-labels-v3")

    def cell(coll: str, unit: str) -> tuple[dict[str, Any] | None, str | None]:
        r = rows.get(coll, {}).get(arm)
        if r is None:
            return None, "not measured"
        done = r["quality"] is not None and r["units_complete"] == r["units"]
        return r, None if done else f"being measured ({r['units_complete']} of {r['units']} {unit})"

    out = []
    for c in DL:
        r, partial = cell(c, "queries")
        out.append(partial or f"{num(r['quality'])} ({points(r['quality'] - bm25[c]['ndcg10_bm25'])})")
    r, partial = cell("nevir", "pairs")
    return out + ["not measured"] * 2 + [partial or f"{r['quality']:.3f} (of {r['units']:,} pairs)", "—"]


# The rows of the variant tables: a results file's variant names, in table order, and how the table calls them.
VARIANTS = {
    "precision.json": {
        "float32": "float32",
        "bfloat16": "bfloat16, float32 answers (now)",
        "bfloat16-raw": "bfloat16, bfloat16 logits (before)",
    },
    "speed_cpu.json": {
        "reference": "Rank1 reference: one `generate` step per pair",
        "before": "transformers, whole prompts (before)",
        "float32": "transformers, shared query heads",
        "float32_batch4": "  same, batch 4",
        "int8": "transformers, shared heads, int8 (`--quantize int8`)",
        "int8_batch4": "  same, batch 4",
        "bfloat16": "transformers, shared heads, bfloat16 (emulated here)",
        "vllm_noprefix": "vLLM, prefix caching off",
        "vllm": "vLLM, prefix caching on",
    },
}


def counter_student(file: str, weight: str) -> list[str]:
    """The default with counter-query contrast ``weight`` (benchmarks/counter.py): DL top-100 with the gain over
    BM25, no top-20 run, NevIR paired accuracy, no rate; a collection not yet in the file: not measured."""
    cols, bm25 = result(file)["collections"], collections("student_v3_top100.json", "rank1-0.5b-labels-v3")
    q = {c: cols[c]["weights"][weight]["quality"] for c in (*DL, "nevir") if c in cols}
    dl = [f"{num(q[c])} ({points(q[c] - bm25[c]['ndcg10_bm25'])})" if c in q else "not measured" for c in DL]
    nevir_cell = f"{q['nevir']:.3f} (of {cols['nevir']['units']:,} pairs)" if "nevir" in q else "not measured"
    return [*dl, "not measured", "not measured", nevir_cell, "—"]


def shipped_models() -> str:
    """README: the shipped models' quality on TREC DL and NevIR, and their rate on this project's 2-core CPU."""
    bm25 = collections("student_v3_top100.json", "rank1-0.5b-labels-v3")
    rows = [
        ["BM25 (first stage)", "—", *[num(bm25[c]["ndcg10_bm25"]) for c in DL] * 2, "—", "—"],
        ["`qwen2.5-coder-0.5b` (zero-shot base)", "direct, alone",
         *[num(collections("student_base_top100.json", "qwen2.5-coder-0.5b")[c]["ndcg10"]) for c in DL],
         *base_top20(), *nevir("student_base.json", "qwen2.5-coder-0.5b")],
        ["**`rank1-0.5b-neg3`** (default: v3 + negation/exclusion pairs; explains itself)",
         "**direct, counter-query contrast 1.5** (the default since 2026-12-05)",
         *counter_student("counter_test_neg3.json", "1.5")],
        ["`rank1-0.5b-neg3` (the same)", "direct, alone (`--contrast 0`)", *negation_student("negation_test_neg3.json")],
        ["`rank1-0.5b-wise` (default before neg3: v3 + a negation student, WiSE-FT)", "direct, alone",
         *negation_student("negation_test_wise.json")],
        ["`rank1-0.5b-labels-v3` (default before wise)", "direct, alone",
         *dl_ndcg("student_v3_top100.json", "rank1-0.5b-labels-v3"),
         *dl_ndcg("student_v3_top20.json", "rank1-0.5b-labels-v3"),
         *nevir("student_v3_nevir.json", "rank1-0.5b-labels-v3")],
        ["`rank1-0.5b-labels` (default before v3)", "direct, fused with BM25 (w=0.4)",
         *dl_ndcg("student_v3_top100.json", "rank1-0.5b-labels", "ndcg10_fused"),
         *dl_ndcg("student_v3_top20.json", "rank1-0.5b-labels", "ndcg10_fused"),
         *nevir("student.json", "rank1-0.5b-labels")],
        ["`rank1-0.5b-reasoning` (v3's explainer)", "reasoning (96 tokens), alone, vLLM",
         "not measured", "not measured", *dl_ndcg("student_reasoning_all.json", "rank1-0.5b-reasoning"),
         *nevir("student_reasoning_all.json", "rank1-0.5b-reasoning")],
        ["`rank1-0.5b-neg2` (negation and exclusion)", "direct, alone", *negation_student("negation_test_neg2.json")],
        ["`rank1-0.5b-neg2s` (neg2 on its own traces; the explainer before neg2h)", "direct, alone",
         *negation_student("negation_test_neg2s.json")],
        ["`rank1-0.5b-neg2h` (neg2s after a second round of its own traces; the explainer before neg3)",
         "direct, alone", *negation_student("negation_test_neg2h.json")],
        ["`rank1-0.5b-neg2h` (the same)", "reasoning (128 tokens), blend 0.25",
         *negation_student("negation_test_neg2h.json", "new reasoning")],
    ]
    header = ["model", "mode", "DL19 top-100", "DL20 top-100", "DL19 top-20", "DL20 top-20",
              "NevIR paired accuracy", "pairs/s (NevIR run)"]
    return table(header, rows)


def v3_test() -> str:
    """benchmarks/README.md: v3's one measurement on the test collections, against what came before."""
    rows = []
    for depth, base in (("100", collections("student_base_top100.json", "qwen2.5-coder-0.5b")), ("20", None)):
        v3 = collections(f"student_v3_top{depth}.json", "rank1-0.5b-labels-v3")
        previous = collections(f"student_v3_top{depth}.json", "rank1-0.5b-labels")
        paired = next(iter(result(f"student_v3_top{depth}.json")["paired_at_own_weights"].values()))
        for i, c in enumerate(DL):
            rows.append([f"{c.upper()}, BM25 top-{depth}", num(v3[c]["ndcg10_bm25"]),
                         num(base[c]["ndcg10"]) if base else base_top20()[i], num(previous[c]["ndcg10_fused"]),
                         f"**{num(v3[c]['ndcg10'])}** {interval(v3[c]['ndcg10_ci95_vs_bm25'])}",
                         f"{points(paired[c]['diff'])} {interval(paired[c]['ci95'])}"])
    accuracy = [nevir(file, model)[0].split(" (")[0] for file, model in (
        ("student_base.json", "qwen2.5-coder-0.5b"), ("student.json", "rank1-0.5b-labels"))]
    rows.append(["NevIR paired accuracy (200 test pairs)", "—", *accuracy,
                 f"**{nevir('student_v3_nevir.json', 'rank1-0.5b-labels-v3')[0]}**", ""])
    header = ["nDCG@10", "BM25", "zero-shot base", "previous default (fused 0.4)", "**v3 alone (shipped)**",
              "v3 vs previous default"]
    return table(header, rows)


def precision() -> str:
    """bfloat16 against float32 on the default model (benchmarks/precision.py, an AMX CPU)."""
    rows = []
    for variant, label in VARIANTS["precision.json"].items():
        cols = result("precision.json")["variants"][variant]["collections"]
        ndcg = [num(cols[c]["ndcg10"]) + (f" ({points(cols[c]['ndcg10_diff_vs_float32'], 2)} "
                                          f"{interval(cols[c]['ndcg10_diff_ci95_vs_float32'], 2)})"
                                          if variant != "float32" else "") for c in DL]
        diff = ", ".join(f"{cols[c]['max_abs_p_true_diff_vs_float32']:.3f} / "
                         f"{cols[c]['mean_abs_p_true_diff_vs_float32']:.4f}" for c in DL
                         ) if variant != "float32" else "—"
        rows.append([label, *ndcg, *(" / ".join(f"{cols[c][key]:,}" for c in DL) for key in (
            "distinct_scores", "queries_with_ties", "tied_judgements")), diff])
    header = ["variant", "DL19 nDCG@10", "DL20 nDCG@10", "distinct scores", "queries with ties", "tied judgements",
              "max / mean \\|ΔP(true)\\| vs float32"]
    return table(header, rows)


def speed_cpu() -> str:
    """Direct-mode throughput on the 2-core AVX2 CPU (benchmarks/speed_cpu.py)."""
    run = result("speed_cpu.json")
    rows = []
    for variant, label in VARIANTS["speed_cpu.json"].items():
        v = run["variants"][variant]
        tokens = (f"{v['prompt_tokens_per_s']:.0f}", f"{v['computed_tokens'] / v['prompt_tokens']:.3f}",
                  f"{v['mfu']:.2f}") if "prompt_tokens" in v else ("—", "—", "—")
        ndcg = f"{num(v['ndcg@10'])} ({v['pairs'] // run['depth']} q)" if v["ndcg@10"] is not None else "—"
        delta = f"{v['max_abs_diff_vs_before']:.1e}" if "max_abs_diff_vs_before" in v else "—"
        rows.append([label, str(v["pairs"]), f"{v['pairs_per_s']:.3f}",
                     f"{run['speedups_vs_reference'][variant]:.2f}", *tokens, ndcg, delta])
    header = ["variant", "pairs", "pairs/s", "x reference", "prompt tok/s", "computed / prompt tokens",
              "MFU (own dtype)", "nDCG@10", "max abs ΔP vs before"]
    return table(header, rows)


def quantized(file: str = "quantized.json", measured_only: bool = False) -> str:
    """Quantized CPU paths against the exact ones (benchmarks/quantized.py): quality and paired differences to
    float32 (direct mode; speed: :func:`quantized_speed`); ``measured_only`` leaves out the variants without
    quality rows (a run on another model that measured only a few)."""
    report = result(file)
    rows = []
    for variant, v in report["variants"].items():
        quality = v.get("quality", {})
        if not quality and (measured_only or speed_only(v)):
            continue
        cells = []
        for name in (*DL, "nevir"):
            q = quality.get(name)
            if q is None:
                cells.append("not measured")
                continue
            value = q.get("nDCG@10", q.get("paired_accuracy"))
            diff = (f" ({points(q['diff_vs_float32'])} {interval(q['diff_ci95_vs_float32'])})"
                    if "diff_vs_float32" in q else "")
            cells.append(num(value) + diff)
        rows.append([f"{variant} (`{v.get('backend', '?')}`)", *cells])
    return table(["variant", "DL19 nDCG@10", "DL20 nDCG@10", "NevIR paired accuracy"], rows)


def _cpu_short(cpu: str) -> str:
    """A CPU description (``rank1.hardware.describe_cpu``) cut to its name and its best matrix unit."""
    unit = next((u for flag, u in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx2", "AVX2"))
                 if flag in cpu), "?")
    return f"{cpu.split(',')[0].replace('(R)', '')}, {unit}"


QUANTIZING_OPTIONS = ("quantize", "weight_format", "compute_type")
"""Backend options that make a variant of benchmarks/quantized.py a quantized path."""


def speed_only(variant: dict[str, Any]) -> bool:
    """Whether a variant of quantized.json sets an option that changes only speed (the vllm backend's ``NEUTRAL``
    options, left out of score-store keys): it is timed, and its quality is that of the variant without it."""
    from rank1.backends.vllm import VLLMOptions

    return any(variant.get("options", {}).get(o) is not None for o in VLLMOptions.NEUTRAL)


def is_exact(variant: dict[str, Any]) -> bool:
    """Whether a variant of quantized.json is an exact path (its recorded options quantize nothing)."""
    return not any(variant.get("options", {}).get(o) for o in QUANTIZING_OPTIONS)


def quantized_speed() -> str:
    """The speed rows of benchmarks/quantized.py, per machine (its CPU, and the ISA limit of the run): direct
    pairs/s and reasoning pairs/s and generated tokens/s, and each as a multiple of the fastest exact variant
    of the same run (the exact paths: :func:`is_exact`)."""
    report = result("quantized.json")
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for variant, v in report["variants"].items():
        for label, row in v.get("speed", {}).items():
            runs.setdefault(label, {})[variant] = row
    rows = []
    for label, by_variant in runs.items():
        exact = [row for variant, row in by_variant.items() if is_exact(report["variants"][variant])]
        best = max((r["direct_pairs_per_second"] for r in exact), default=None)
        best_reason = max((r["reasoning"]["pairs_per_second"] for r in exact if "reasoning" in r), default=None)
        cpu = _cpu_short(next(iter(by_variant.values())).get("cpu", "?"))
        for variant, row in by_variant.items():
            reasoning = row.get("reasoning")
            rows.append([f"{cpu} ({label})", variant, f"{row['direct_pairs_per_second']:.2f}",
                         f"{row['direct_pairs_per_second'] / best:.2f}" if best else "—",
                         f"{reasoning['pairs_per_second']:.2f} / {reasoning['generated_tokens_per_second']:.1f}"
                         if reasoning else "not measured",
                         f"{reasoning['pairs_per_second'] / best_reason:.2f}" if reasoning and best_reason else "—"])
    return table(["machine (run)", "variant", "direct pairs/s", "x fastest exact", "reasoning pairs/s / gen. tok/s",
                  "x fastest exact"], rows)


def negation_test(name: str = "negation_test.json") -> str:
    """benchmarks/README.md: issue 32's test measurement (benchmarks/negation.py, its JSON ``name``): each arm per
    collection with its interval and coverage, and the paired differences (points)."""
    report = result(name)
    arms = [a["name"] for a in report["arms"]]
    rows = []
    order = ("nevir", "excluir", "boolq", *DL)
    for coll, by_arm in sorted(report["rows"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9):
        cells = []
        for arm in arms:
            r = by_arm.get(arm)
            cells.append("—" if r is None else "not measured yet" if r["quality"] is None else
                         f"{num(r['quality'], 3)} [{num(r['ci95'][0], 3)}, {num(r['ci95'][1], 3)}] "
                         f"({r['units_complete']} of {r['units']})")
        for a, b in (("new direct", "baseline direct"), ("new reasoning", "new direct")):
            d = report["paired"].get(coll, {}).get(f"{a} - {b}")
            cells.append("—" if d is None else f"{points(d['diff'])} {interval(d['ci95'])} ({d['units']})")
        rows.append([f"{coll} ({next(iter(by_arm.values()))['metric']})", *cells])
    header = ["collection (metric)", *[f"{a} (complete units)" for a in arms], "new - baseline, direct (units)",
              "reasoning - direct, new (units)"]
    return table(header, rows)


def counter_test(name: str = "counter_test_neg3.json") -> str:
    """benchmarks/README.md: counter-query contrast on the test collections (benchmarks/counter.py, its JSON
    ``name``): each weight per collection with its interval, the flipped queries, and the difference to W = 0."""
    report = result(name)
    weights = [str(w) for w in report["weights"]]
    rows = []
    for coll, c in report["collections"].items():
        cells = [f"{num(q['quality'], 3)} [{num(q['ci95'][0], 3)}, {num(q['ci95'][1], 3)}]"
                 for w in weights for q in [c["weights"][w]]]
        diffs = [f"{points(d['diff'])} {interval(d['ci95'])}" for w in weights[1:]
                 for d in [c["weights"][w]["vs_plain"]]]
        rows.append([f"{coll} ({c['metric']}, {c['units']:,} units)", f"{c['flipped_queries']} of {c['queries']}",
                     *cells, *diffs])
    header = ["collection (metric, units)", "queries flipped", *[f"W = {w}" for w in weights],
              *[f"W = {w} - W = 0 (points)" for w in weights[1:]]]
    return table(header, rows)


TABLES: dict[str, Callable[[], str]] = {
    "negation-test": negation_test,
    "negation-test-neg2": lambda: negation_test("negation_test_neg2.json"),
    "negation-test-wise": lambda: negation_test("negation_test_wise.json"),
    "negation-test-neg2s": lambda: negation_test("negation_test_neg2s.json"),
    "negation-test-neg2h": lambda: negation_test("negation_test_neg2h.json"),
    "negation-test-neg3": lambda: negation_test("negation_test_neg3.json"),
    "shipped-models": shipped_models,
    "counter-test": counter_test,
    "counter-test-rev3": lambda: counter_test("counter_test_neg3_rev3.json"),
    "v3-test": v3_test,
    "precision": precision,
    "speed-cpu": speed_cpu,
    "quantized": quantized,
    "quantized-neg3": lambda: quantized("quantized_neg3.json", measured_only=True),
    "quantized-neg3-contrast": lambda: quantized("quantized_neg3_contrast.json", measured_only=True),
    "quantized-speed": quantized_speed,
    "quantized-gate": lambda: quantized_dev.table(result("quantized_neg3_dev.json")),
    "ttc": lambda: ttc_report.table(result("ttc.json")),
    "ttc-neg2h": lambda: ttc_report.table(result("ttc_neg2h.json")),
    "ttc-neg3": lambda: ttc_report.table(result("ttc_neg3.json")),
}


def documents() -> Iterator[Path]:
    """The markdown files that may hold rendered tables."""
    for pattern in DOC_GLOBS:
        yield from sorted(ROOT.glob(pattern))


def render(text: str, source: Path | str = "") -> str:
    """`text` with every marked block replaced by its table as the results render it now."""
    def block(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in TABLES:
            raise KeyError(f"{source}: unknown table {name!r} (known: {', '.join(TABLES)})")
        body = TABLES[name]().rstrip("\n")  # one newline before the closing marker, whatever the table ends with
        return f"{match[1]}{body}\n{match[4]}"

    return BLOCK.sub(block, text)


def stale() -> list[Path]:
    """The documents whose rendered blocks differ from what the results render now."""
    return [path for path in documents() if render(path.read_text(), path) != path.read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is out of date")
    args = parser.parse_args(argv)
    out_of_date = stale()
    for path in out_of_date:
        if args.check:
            print(f"{path.relative_to(ROOT)}: tables out of date (run python -m benchmarks.tables)")
        else:
            path.write_text(render(path.read_text(), path))
            print(f"{path.relative_to(ROOT)}: tables rewritten")
    return 1 if args.check and out_of_date else 0


if __name__ == "__main__":
    sys.exit(main())
