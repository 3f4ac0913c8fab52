"""The dev gate of a quantized default (``benchmarks.quantized_dev``): its verdicts, and the dev collections it
reads, scored from a made-up run. No model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.quantized_dev import GATE, dev_collection, gate, table


def units(value: float, n: int = 10) -> dict[str, float]:
    return {f"u{i}": value for i in range(n)}


def collections(**values: dict[str, float]) -> dict[str, dict[str, float]]:
    every = {name: units(1.0) for names, _ in GATE.values() for name in names}
    return {**every, **values}


def test_a_variant_equal_to_its_reference_passes() -> None:
    verdict = gate(collections(), collections())
    assert verdict is not None and verdict["passes"]
    assert {p: v["diff"] for p, v in verdict["parts"].items()} == {"msmarco-dev": 0.0, "negation": 0.0,
                                                                  "exclusion": 0.0}


@pytest.mark.parametrize(("name", "lost", "passes"), [
    ("msmarco-dev", 0.004, True), ("msmarco-dev", 0.006, False),   # at most 0.5 nDCG@10 point
    ("contrast-dev", 0.01, True), ("contrast-dev", 0.03, False),   # at most 2 points of paired accuracy
    ("exclude-hard", 0.02, True), ("exclude-hard", 0.06, False),   # pooled with exclude-dev: half of it counts
])
def test_each_part_fails_past_its_bar(name: str, lost: float, passes: bool) -> None:
    verdict = gate(collections(**{name: units(1.0 - lost)}), collections())
    assert verdict is not None and verdict["passes"] is passes
    failed = [p for p, v in verdict["parts"].items() if not v["passes"]]
    assert failed == ([] if passes else [next(p for p, (names, _) in GATE.items() if name in names)])


def test_no_verdict_while_a_collection_is_missing() -> None:
    partial = collections()
    del partial["exclude-dev"]
    for verdict in (gate(partial, collections()), gate(collections(), partial)):
        assert verdict is not None and verdict["passes"] is None and set(verdict["parts"]) == {"msmarco-dev",
                                                                                                "negation"}
    assert gate({"exclude-dev": units(1.0)}, collections()) is None


def test_dev_collections_score_units_from_a_run(dev_groups: Path) -> None:
    """contrast-dev: one unit per NevIR-style pair, right when both its queries rank their own passage first;
    exclude-dev: one unit per exclusion group; exclude-hard: two harder groups made of each."""
    paired = dev_collection("contrast-dev", 0, str(dev_groups), None)
    assert paired["metric"] == "paired_accuracy" and paired["depth"] == 2
    right = {q: {d: 1.0 - i for i, d in enumerate(docs)} for q, docs in paired["run"].items()}  # first one wins
    assert paired["values"](right) == {"nevir-train:7-1": 1.0}
    wrong = {q: dict(zip(docs, (0.0, 1.0))) for q, docs in paired["run"].items()}
    assert paired["values"]({**right, "g1": wrong["g1"]}) == {"nevir-train:7-1": 0.0}
    excluded = dev_collection("exclude-dev", 0, None, str(dev_groups))
    assert excluded["metric"] == "top1" and list(excluded["run"]) == ["g2"]
    hard = dev_collection("exclude-hard", 0, None, str(dev_groups))
    assert hard["depth"] == 3 and len(hard["run"]) == 2
    with pytest.raises(SystemExit, match="exclude-dev needs --exclude-dev"):
        dev_collection("exclude-dev", 0, str(dev_groups), None)


def test_table_names_each_part_and_the_verdict() -> None:
    variant = {"backend": "vllm", "units": collections(**{"contrast-dev": units(0.5)})}
    variant["gate"] = {"exact": gate(variant["units"], collections())}
    text = table({"variants": {"exact": {"backend": "transformers", "units": collections()}, "q8": variant}})
    lines = text.splitlines()
    assert len(lines) == 4 and "negation dev paired accuracy (10 units, bar -2)" in lines[0]
    assert lines[2].startswith("| exact (`transformers`) | 1.0000 | 1.0000 | 1.0000 | reference |")
    partial = {"backend": "transformers", "units": {n: units(1.0) for n in ("msmarco-dev", "contrast-dev")}}
    partial["gate"] = {"exact": gate(partial["units"], collections())}
    text = table({"variants": {"exact": {"backend": "transformers", "units": collections()}, "q8": variant,
                               "f32": partial}})
    assert text.splitlines()[4] == ("| f32 (`transformers`) | 1.0000 (+0.0 [+0.0, +0.0]) | "
                                    "1.0000 (+0.0 [+0.0, +0.0]) | not measured | incomplete |")
    assert lines[3] == ("| q8 (`vllm`) | 1.0000 (+0.0 [+0.0, +0.0]) | 0.5000 (-50.0 [-50.0, -50.0], fails) | "
                        "1.0000 (+0.0 [+0.0, +0.0]) | fails |")


def test_only_the_units_both_hold_are_compared() -> None:
    """A variant run with more dev queries than its reference is compared on the reference's queries."""
    more = collections(**{"msmarco-dev": {**units(1.0), "extra": 0.0}})
    verdict = gate(more, collections())
    assert verdict is not None and verdict["parts"]["msmarco-dev"] == {
        "units": 10, "diff": 0.0, "ci95": [0.0, 0.0], "most_lost": 0.005, "passes": True}
