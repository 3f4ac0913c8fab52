"""The fusion study's blends (:mod:`benchmarks.fusion`): rank1's own blend is the product's, the others behave."""

from __future__ import annotations

import pytest

from benchmarks.fusion import FAMILIES, blend, minmax, rrf, zlogit, zscore
from rank1.scoring import Judgement
from rank1.results import rank_query

FIRST = {"q1": {"a": 12.0, "b": 9.0, "c": 3.0}, "q2": {"x": 1.0, "y": 2.0}}
P_TRUE = {"q1": {"a": 0.2, "b": 0.9, "c": 0.6}, "q2": {"x": 0.7, "y": 0.7}}


def test_rank1_blend_is_the_products_fusion() -> None:
    model_norm, first_norm = FAMILIES["p+minmax"]
    for w in (0.0, 0.4, 1.0):
        got = blend(FIRST, P_TRUE, model_norm, first_norm, w)
        for qid, docs in FIRST.items():
            head = sorted(docs.items())
            ranked = rank_query(head, [Judgement(P_TRUE[qid][d]) for d, _ in head], fusion_weight=w)
            assert {r.doc_id: r.score for r in ranked} == pytest.approx(got[qid])


def test_normalisers_and_rrf() -> None:
    assert minmax([3.0, 1.0, 2.0]) == [1.0, 0.0, 0.5] and minmax([2.0, 2.0]) == [0.0, 0.0]
    z = zscore([1.0, 2.0, 3.0])
    assert sum(z) == pytest.approx(0.0) and sum(v * v for v in z) / 3 == pytest.approx(1.0)
    assert zscore([5.0, 5.0]) == [0.0, 0.0]
    assert zlogit([0.5, 0.9, 0.1]) == pytest.approx([0.0, 1.2247449, -1.2247449])
    assert zlogit([0.0, 1.0])[0] < 0 < zlogit([0.0, 1.0])[1]  # clipped, no division by zero
    fused = rrf(FIRST, P_TRUE, k=1)["q1"]  # ranks: first a,b,c; model b,c,a
    assert fused == pytest.approx({"a": 1 / 2 + 1 / 4, "b": 1 / 3 + 1 / 2, "c": 1 / 4 + 1 / 3})
    tied = rrf(FIRST, P_TRUE, k=1)["q2"]  # equal P(true): the smaller id ranks first in the model's order
    assert tied == pytest.approx({"x": 1 / 3 + 1 / 2, "y": 1 / 2 + 1 / 3})
