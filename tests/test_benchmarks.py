"""The benchmark scripts still run: each in a tiny configuration on real data and the smallest real model.

These are not timed tests; they check that every script runs end to end and writes the JSON it documents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture
def run_script(tmp_path: Path, shared_data: Path, smollm2_ref: Any):
    """Run ``python -m benchmarks.<script>`` from the repository root with the session's converted smollm2 and a
    private score store."""
    env = {**os.environ, "RANK1_CACHE_DIR": str(Path(smollm2_ref.path).parent),
           "RANK1_SCORE_CACHE": str(tmp_path / "scores.sqlite"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}

    def run(script: str, *args: str) -> dict[str, Any]:
        out = tmp_path / f"{script}.json"
        module = f"benchmarks.{script.removesuffix('.py')}"
        done = subprocess.run([sys.executable, "-m", module, "--model", "smollm2-135m", *args, "--out", str(out)],
                              env=env, capture_output=True, text=True, timeout=900, cwd=REPO)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(out.read_text())

    return run


def test_depth_script(run_script) -> None:
    report = run_script("depth.py", "--collections", "dl19", "--queries", "1", "--depths", "2", "3",
                        "--backend", "transformers")
    assert [(r["depth"], r["pairs"]) for r in report["rows"]] == [(2, 2), (3, 3)]
    assert all(0.0 <= r["ndcg10_rerank"] <= 1.0 and r["seconds"] > 0 for r in report["rows"])


def test_budget_script(run_script, tmp_path: Path) -> None:
    report = run_script("budget.py", "--queries", "1", "--depth", "2", "--nevir-pairs", "1", "--budgets", "4",
                        "--adaptive-top", "1", "--collections", "dl20,nevir")
    modes = [(p["collection"], p["mode"]) for p in report["points"]]
    assert modes == [(c, m) for c in ("dl20", "nevir") for m in ("direct", "reasoning", "adaptive")]
    assert all(p["gen_tokens_per_pair"] <= 4 for p in report["points"])
    assert (tmp_path / "budget.py.png").stat().st_size > 0



def test_ttc_script(run_script, tmp_path: Path) -> None:
    """The test-time-compute curve end to end on one query / item per collection: every point, the policy chosen
    on the dev split, full coverage, budget-forcing stats; a rerun reads everything from the store."""
    args = ("--limit-queries", "1", "--depth", "2", "--budgets", "4", "8", "--collections", "dl19,nevir,boolq",
            "--choose-policy", "--slice-pairs", "2")
    report = run_script("ttc.py", *args)
    rows = {(r["collection"], r["point"]): r for r in report["rows"]}
    assert set(rows) == {(c, p) for c in ("dl19", "nevir", "boolq") for p in ("direct", "adaptive", "b4", "b8")}
    assert all(r["coverage"] == 1.0 and r["quality"] is not None for r in rows.values())
    assert rows[("nevir", "direct")]["pairs_planned"] == 4 and rows[("boolq", "b4")]["pairs_planned"] == 2
    assert rows[("dl19", "b4")]["gen_tokens_per_pair"] <= 4 and rows[("dl19", "b4")]["pairs_at_both"] == 2
    assert rows[("dl19", "b8")]["diff_vs_direct"]["units"] == 1 and "agree_with_max_budget" not in rows[("dl19", "b8")]
    (policy,) = report["policies"].values()
    assert policy["chosen_on"].startswith("msmarco-dev: 1 held-out") and "policy" in policy["chosen"]
    assert (tmp_path / "ttc.py.png").stat().st_size > 0
    again = run_script("ttc.py", *args)
    assert all(r["cached_at_start"] == r["pairs_judged"] for r in again["rows"])
    assert [r["timing"] for r in again["rows"]] == [r["timing"] for r in report["rows"]]


def test_counter_script(run_script) -> None:
    """Counter-query contrast on one pair / item / query per collection: every weight from the same stored
    judgements, W = 0 the plain direct score, the flipped queries judged a second time; rerun: all stored."""
    args = ("--limit", "1", "--depth", "2", "--collections", "nevir,boolq,dl19", "--weights", "0.5", "1")
    report = run_script("counter.py", *args)
    cols = report["collections"]
    assert set(cols) == {"nevir", "boolq", "dl19"} and report["chosen"] is None  # no dev rows: nothing chosen
    # NevIR's first pair: one query holds a negation ("is not banned"), the other none; BoolQuestions' first item
    # an exclusion ("excluding antibiotic choices ..."), judged against the excluded part; DL19's a topical query
    assert cols["nevir"]["pairs"] == 4 and cols["nevir"]["flipped_queries"] == 1 and cols["nevir"]["counter_pairs"] == 2
    assert cols["boolq"]["flipped_queries"] == 1 and cols["boolq"]["counter_pairs"] == 2
    assert cols["dl19"]["flipped_queries"] == 0
    assert all(set(c["weights"]) == {"0.0", "0.5", "1.0"} and c["weights"]["0.0"]["vs_plain"] is None
               for c in cols.values())
    assert all(c["weights"]["1.0"]["vs_plain"]["units"] == 1 for c in cols.values())
    again = run_script("counter.py", *args)
    assert again["collections"]["nevir"]["weights"] == cols["nevir"]["weights"]
    # reasoning mode, the counter-queries reasoned too, on the first NevIR train pair (a dev set)
    reasoned = run_script("counter.py", "--limit", "1", "--collections", "nevir-train", "--weights", "1",
                          "--mode", "reasoning", "--budget", "4", "--counter-mode", "same")
    row = reasoned["collections"]["nevir-train"]
    assert reasoned["mode"] == reasoned["counter_mode"] == "reasoning" and row["units"] == 1
    assert row["pairs"] == 4 and row["flipped_queries"] == 1 and row["counter_pairs"] == 2  # "was not achieved"


def test_negation_script(run_script) -> None:
    """Issue 32's test measurement end to end on one pair / item / query per collection: three arms, reasoning
    blended with direct, paired comparisons, full coverage; DL in direct mode only."""
    args = ("--baseline", "smollm2-135m", "--limit", "1", "--depth", "2", "--budget", "4", "--direct-blend", "0.5",
            "--collections", "nevir,boolq,dl19", "--slice-pairs", "2")
    direct_only = run_script("negation.py", *args, "--no-reasoning")["rows"]
    assert direct_only["nevir"]["new direct"]["coverage"] == 1.0
    assert direct_only["nevir"]["new reasoning"]["pairs_judged"] == 0  # --no-reasoning: none generated
    report = run_script("negation.py", *args, "--baseline-blend", "0.5")
    rows = report["rows"]
    assert set(rows["nevir"]) == {"baseline direct", "new direct", "new reasoning", "baseline reasoning"} and set(
        rows["dl19"]) == {"baseline direct", "new direct"}
    # smollm2 is its own explainer, and here the baseline too: its reasoning mode is the new one's, same blend
    assert rows["boolq"]["baseline reasoning"] == rows["boolq"]["new reasoning"]
    assert all(r["coverage"] == 1.0 and r["quality"] is not None for c in rows.values() for r in c.values())
    assert rows["nevir"]["new reasoning"]["pairs_planned"] == 4 and rows["nevir"]["new reasoning"][
        "gen_tokens_per_pair"] <= 4
    assert report["paired"]["boolq"]["new direct - baseline direct"]["diff"] == 0.0  # the same model twice
    assert set(report["paired"]["nevir"]) == {"new direct - baseline direct", "new reasoning - new direct",
                                              "new reasoning - baseline direct", "baseline reasoning - baseline direct",
                                              "baseline reasoning - new direct"}
    assert run_script("negation.py", *args, "--baseline-blend", "0.5", "--no-judge")["rows"] == rows  # all stored


def test_negation_blend_is_the_reranker_rule() -> None:
    from benchmarks.negation import blended
    from rank1.scoring import Judgement

    j = Judgement(0.2, "r", 3, False, False)
    reasoned, direct = {("q", "d"): j, ("q", "e"): j}, {("q", "d"): j._replace(score=0.6)}
    assert blended(reasoned, direct, 0.0) is reasoned
    assert blended(reasoned, direct, 0.25) == {("q", "d"): j._replace(score=0.75 * 0.2 + 0.25 * 0.6)}


def test_reasoning_arms_refuse_a_model_that_reasons_through_its_explainer(capsys) -> None:
    """The default hands reasoning to its explainer: an arm that names it for reasoning would measure a cascade
    whose lookups find nothing, so both benchmarks stop at parse time and name the explainer."""
    from benchmarks import negation, ttc
    from rank1.models import DEFAULT_MODEL
    from rank1.students import explainer_for

    wise = "rank1-0.5b-wise"  # the default until 2026-12-04; the default now explains itself
    explainer = explainer_for(wise)
    assert explainer != wise and explainer_for(DEFAULT_MODEL) == DEFAULT_MODEL
    for parse, argv in ((ttc.parse, ["--model", wise]), (negation.parse, ["--model", wise])):
        with pytest.raises(SystemExit) as stop:
            parse(argv)
        assert stop.value.code == 2 and f"name {explainer} for the reasoning arm" in capsys.readouterr().err
    assert ttc.parse(["--direct-model", wise]).reasoning_model == explainer
    assert negation.parse(["--model", DEFAULT_MODEL, "--no-reasoning"]).model == DEFAULT_MODEL


def test_quantized_script(run_script) -> None:
    pytest.importorskip("ctranslate2")
    report = run_script("quantized.py", "--variants", "float32,ct2-int8", "--queries", "1", "--depth", "2",
                        "--nevir-pairs", "1", "--speed-pairs", "2", "--reasoning-model", "smollm2-135m",
                        "--reasoning-pairs", "2", "--budget", "4")
    ct2 = report["variants"]["ct2-int8"]
    assert ct2["engine"].startswith("ctranslate2 compute_type=int8") and ct2["quality"]["nevir"]["judgements"] == 4
    assert "diff_ci95_vs_float32" in ct2["quality"]["dl19"] and "diff_vs_float32" not in report["variants"][
        "float32"]["quality"]["dl19"]
    native = ct2["speed"]["native"]
    assert native["direct_pairs_per_second"] > 0 and native["reasoning"]["generated_tokens_per_pair"] <= 4


def test_quantized_dev_gate(run_script, dev_groups: Path) -> None:
    """The dev collections and the gate a quantized default must pass, against the reference variant."""
    report = run_script("quantized.py", "--parts", "quality", "--variants", "float32,torch-int8", "--contrast", "1.5",
                        "--collections", "msmarco-dev,contrast-dev,exclude-dev,exclude-hard", "--dev-queries", "1",
                        "--contrast-dev", str(dev_groups), "--exclude-dev", str(dev_groups))
    int8 = report["variants"]["torch-int8"]
    assert int8["quality"]["contrast-dev"]["judgements"] == 4 and int8["quality"]["exclude-hard"]["judgements"] == 6
    assert set(int8["units"]["msmarco-dev"]) == set(report["variants"]["float32"]["units"]["msmarco-dev"])
    verdict = int8["gate"]["float32"]
    assert set(verdict["parts"]) == {"msmarco-dev", "negation", "exclusion"} and isinstance(verdict["passes"], bool)
    assert verdict["parts"]["exclusion"]["units"] == 3 and "gate" not in report["variants"]["float32"]


def test_speed_script(run_script) -> None:
    report = run_script("speed.py", "--pairs", "4", "--depth", "2", "--variants", "reference,transformers",
                        "--reference-pairs", "1")  # rounded up to the first query's 2 pairs
    ref, hf = report["variants"]["reference"], report["variants"]["transformers"]
    assert ref["pairs"] == 2 and ref["subsampled"] and hf["pairs"] == 4 and report["speedup_vs_reference"] > 0
    assert ref["ndcg@10_reference_queries"] == pytest.approx(hf["ndcg@10_reference_queries"])
    assert hf["max_abs_score_diff_vs_reference"] <= 0.02 and "ndcg@10" in hf and "ndcg@10" not in ref


def test_quality_script(run_script) -> None:
    report = run_script("quality.py", "--collections", "dl19", "--queries", "1", "--depth", "2", "--mode", "direct")
    entry = report["collections"]["dl19"]
    assert entry["pairs"] == 2 and report["fusion_weight"] in [round(0.1 * i, 1) for i in range(11)]


def test_student_script(run_script) -> None:
    report = run_script("student.py", "--collections", "msmarco-dev,dl19,nevir", "--dev-queries", "2",
                        "--queries", "1", "--depth", "3", "--nevir-pairs", "2")
    entry = report["models"]["smollm2-135m"]
    dev, dl19 = entry["collections"]["msmarco-dev"], entry["collections"]["dl19"]
    assert dev["pairs"] == 40 and "mrr10" in dev and entry["fusion_weight_chosen_on"].startswith("msmarco-dev")
    assert dl19["pairs"] == 3 and dl19["ndcg10_fused"] == dl19["ndcg10_by_fusion_weight"][str(entry["fusion_weight"])]
    lo, hi = dl19["ndcg10_ci95_vs_bm25"]
    assert lo - 1e-4 <= dl19["ndcg10"] - dl19["ndcg10_bm25"] <= hi + 1e-4  # the interval is rounded to 4 places
    assert 0.0 <= entry["collections"]["nevir"]["paired_accuracy"] <= 1.0


def test_student_script_dev_collections(run_script, tmp_path: Path) -> None:
    """The negation dev set: NevIR train pairs and held-out contrast groups (top-1 per rule)."""
    from distill.msmarco import Group, write_groups

    dev = tmp_path / "contrast_dev.jsonl"
    write_groups(dev, [Group("a", "what is not red", ("p", "n"), ("Grass is green.", "Grass is red."), (1, 0),
                             "negate-answer")])
    report = run_script("student.py", "--collections", "nevir-train,contrast-dev", "--contrast-dev", str(dev),
                        "--nevir-train-pairs", "3")
    rows = report["models"]["smollm2-135m"]["collections"]
    assert rows["nevir-train"]["pairs"] == 12 and 0.0 <= rows["nevir-train"]["paired_accuracy"] <= 1.0
    assert rows["contrast-dev"]["pairs"] == 2 and set(rows["contrast-dev"]["top1"]) == {"all", "negate-answer"}


def test_precision_script(run_script) -> None:
    # two passages: bfloat16 is emulated (about 100x slower than float32) on CPUs without bfloat16 units
    report = run_script("precision.py", "--collections", "dl19", "--queries", "1", "--depth", "2")
    v = report["variants"]
    assert set(v) == {"float32", "bfloat16", "bfloat16-raw"} and v["bfloat16"]["float32_answers"]
    fp32, bf16 = v["float32"]["collections"]["dl19"], v["bfloat16"]["collections"]["dl19"]
    assert fp32["judgements"] == bf16["judgements"] == 2 and bf16["distinct_scores"] == 2
    assert bf16["max_abs_p_true_diff_vs_float32"] <= 0.02 and "answers=float32" in v["bfloat16"]["engine"]
    assert "answers=" not in v["float32"]["engine"]


def test_cpu_speed_script(run_script) -> None:
    report = run_script("speed_cpu.py", "--pairs", "4", "--subset", "2", "--depth", "2", "--sweep", "4",
                        "--bf16-pairs", "2", "--variants", "reference,before,float32,int8,bfloat16")
    v = report["variants"]
    assert set(v) == {"before", "reference", "float32", "float32_batch4", "int8", "int8_batch4", "bfloat16"}
    assert v["float32"]["max_abs_diff_vs_before"] < 1e-4 and v["float32"]["reused_tokens"] > 0
    assert v["before"]["reused_tokens"] == 0 and v["before"]["ndcg@10"] == v["float32"]["ndcg@10"]
    assert v["bfloat16"]["pairs"] == 2 and v["bfloat16"]["dtype"] == "bfloat16"
    assert all(0 < row["mfu"] for name, row in v.items() if name != "reference")
    padding = report["padding"]["batch_8"]
    assert padding["shared_heads"]["computed_per_prompt_token"] < padding["whole_prompts"]["computed_per_prompt_token"]
    assert report["cpu"] and report["auto_dtype"]


def test_fusion_script(run_script) -> None:
    report = run_script("fusion.py", "--dev-queries", "2")
    families = report["families"]
    assert set(families) == {"p+minmax", "minmax+minmax", "zlogit+z", "rrf"}
    assert families["p+minmax"]["ci95_vs_rank1_blend"] == [0.0, 0.0]
    assert all(row["ndcg10"] == max(row["ndcg10_by_setting"].values()) for row in families.values())
    assert 0.0 <= report["ndcg10_model_alone"] <= 1.0 and "2 held-out queries" in report["collection"]


def test_student_paired_section() -> None:
    """``paired``: per collection and weight, the mean per-query difference to the first model, inside its
    bootstrap interval; a weight where both runs agree gives 0 and [0, 0]."""
    from benchmarks.student import WEIGHTS, paired

    base = {str(w): {"q1": 0.2, "q2": 0.5, "q3": 0.1} for w in WEIGHTS}
    better = {str(w): {"q1": 0.4, "q2": 0.5, "q3": 0.4} for w in WEIGHTS}
    better["1.0"] = dict(base["1.0"])
    out = paired(["a", "b"], {"a": {"dev": base}, "b": {"dev": better, "dl19": base}})
    assert list(out) == ["b - a"] and list(out["b - a"]) == ["dev"]  # dl19: only one model has it
    row = out["b - a"]["dev"]
    assert row["0.0"]["diff"] == round((0.2 + 0.0 + 0.3) / 3, 4)
    assert row["0.0"]["ci95"][0] <= row["0.0"]["diff"] <= row["0.0"]["ci95"][1]
    assert row["1.0"] == {"diff": 0.0, "ci95": [0.0, 0.0]}


def test_student_direct_blend_grid_is_the_reranker_rule() -> None:
    """``blend``: (1 - b) * reasoned + b * direct per pair; ``headline`` reads it as paired accuracy, top-1 or
    nDCG@10 by what the collection has."""
    from benchmarks.student import blend, headline

    reasoned = {"q1": {"d1": 0.0, "d2": 1.0}, "q2": {"d2": 0.2, "d1": 0.8}}
    direct = {"q1": {"d1": 0.9, "d2": 0.3}, "q2": {"d2": 0.6, "d1": 0.4}}
    assert blend(reasoned, direct, 0.0) == reasoned and blend(reasoned, direct, 1.0) == direct
    assert blend(reasoned, direct, 0.25)["q1"] == {"d1": 0.225, "d2": 0.825}
    pairs = {"pairs": [("q1", "d1", "q2", "d2")]}
    assert headline(pairs, reasoned) == 0.0 and headline(pairs, direct) == 1.0
    assert headline({"qrels": {"q1": {"d2": 1}}}, {"q1": reasoned["q1"]}) == 1.0


def test_student_paired_at_own_weights() -> None:
    """``paired_at_own_weights``: each model at its own fusion weight against the first at its own; a model
    without a weight is left out."""
    from benchmarks.student import WEIGHTS, paired_at_own_weights

    first = {str(w): {"q1": 0.2, "q2": 0.5} for w in WEIGHTS}
    first["0.4"] = {"q1": 0.3, "q2": 0.6}
    second = {str(w): {"q1": 0.0, "q2": 0.0} for w in WEIGHTS}
    second["0.0"] = {"q1": 0.5, "q2": 0.9}
    per_q = {"a": {"dl20": first}, "b": {"dl20": second}, "c": {"dl20": second}}
    out = paired_at_own_weights(["a", "b", "c"], per_q, {"a": 0.4, "b": 0.0, "c": None})
    assert list(out) == ["b (w=0.0) - a (w=0.4)"]
    row = out["b (w=0.0) - a (w=0.4)"]["dl20"]
    assert row["diff"] == round((0.2 + 0.3) / 2, 4) and row["ci95"][0] <= row["diff"] <= row["ci95"][1]


def test_gemm_rate_script(tmp_path: Path) -> None:
    from benchmarks import gemm_rate

    out = tmp_path / "gemm.json"
    gemm_rate.main(["--rows", "4", "16", "--seconds", "0.01", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [r["rows"] for r in report["rows"]] == [4, 16] and report["shape"] == [896, 4864]
    assert all(r["float32_gflops"] > 0 and r["int8_dynamic_gflops"] > 0 for r in report["rows"]) and report["cpu"]
