"""rank1 in PyTerrier: ``Rank1Reranker`` as a ``pt.Transformer`` on real DL19 data and the real smollm2-135m.

Only ``pt.Transformer``, ``pt.Experiment`` and data frames are used (no Terrier index, no Java). The BM25
first stage is DL19's published BM25 top-100 run (``../shared/data/trec_dl``), served as a PyTerrier
transformer from its data frame. Skips when python-terrier is not installed or the data is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pt = pytest.importorskip("pyterrier", reason="python-terrier is not installed: pip install 'rank1[pyterrier]'")
pd = pytest.importorskip("pandas")

from pyterrier.measures import RR, nDCG  # noqa: E402

from rank1.io import read_qrels, read_rankllm  # noqa: E402
from rank1.metrics import evaluate  # noqa: E402
from rank1.pyterrier import Rank1Reranker, qrels_frame, run_frame, topics_frame  # noqa: E402
from rank1.store import ScoreStore  # noqa: E402

pytestmark = pytest.mark.slow

QUERIES, DEPTH = 4, 8


@pytest.fixture(scope="module")
def reranker(smollm2_ref: Any) -> Any:
    from rank1.reranker import Reranker

    return Reranker(model=smollm2_ref.name, cache_dir=str(Path(smollm2_ref.path).parent), mode="direct",
                    batch_size=8, fusion_weight=0.0)


@pytest.fixture(scope="module")
def dl19(shared_data: Path) -> dict[str, Any]:
    """The first judged DL19 queries with their BM25 top ``DEPTH``: rank1's dicts and PyTerrier's frames."""
    cands = read_rankllm(shared_data / "trec_dl" / "bm25_top100_dl19.json")
    qrels = read_qrels(shared_data / "trec_dl" / "qrels.dl19-passage.txt")
    qids = [q for q in cands.run if q in qrels][:QUERIES]
    run = {q: dict(sorted(cands.run[q].items(), key=lambda kv: (-kv[1], kv[0]))[:DEPTH]) for q in qids}
    topics, judged = {q: cands.topics[q] for q in qids}, {q: qrels[q] for q in qids}
    return {"run": run, "corpus": cands.corpus, "topics": topics, "qrels": judged,
            "bm25": run_frame(run, cands.corpus, topics), "topics_frame": topics_frame(topics),
            "qrels_frame": qrels_frame(judged)}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One score store for the module: the experiment fills it, the other tests read from it."""
    return tmp_path_factory.mktemp("pyterrier") / "scores.sqlite"


def test_experiment_against_bm25_with_the_scores_of_rerank_run(reranker: Any, dl19: dict[str, Any],
                                                                store_path: Path) -> None:
    bm25 = pt.Transformer.from_df(dl19["bm25"])
    rank1 = Rank1Reranker(reranker, store=store_path)
    table = pt.Experiment([bm25, bm25 >> rank1], dl19["topics_frame"], dl19["qrels_frame"], [nDCG @ 10, RR @ 10],
                          names=["BM25", "BM25 >> rank1"])
    assert list(table["name"]) == ["BM25", "BM25 >> rank1"]
    assert table["nDCG@10"][0] == pytest.approx(evaluate(dl19["run"], dl19["qrels"], ["nDCG@10"])["nDCG@10"])

    with ScoreStore(store_path) as store:  # the experiment stored every pair it judged
        assert store.count() == QUERIES * DEPTH
    frame = (bm25 >> rank1)(dl19["topics_frame"])  # from the store now
    fresh = reranker.rerank_run(dl19["run"], dl19["corpus"], dl19["topics"], depth=DEPTH, progress=False)
    expected = fresh.scores()
    assert len(frame) == QUERIES * DEPTH
    assert [expected[q][d] for q, d in zip(frame["qid"], frame["docno"])] == list(frame["score"])  # bit for bit
    for qid, group in frame.groupby("qid", sort=False):
        assert list(group["docno"]) == [d.doc_id for d in fresh.run[qid]] and list(group["rank"]) == list(range(DEPTH))
    assert table["nDCG@10"][1] == pytest.approx(evaluate(expected, dl19["qrels"], ["nDCG@10"])["nDCG@10"])


def test_fusion_depth_rank_only_input_and_reasoning_column(reranker: Any, dl19: dict[str, Any],
                                                           store_path: Path) -> None:
    store = ScoreStore(store_path)
    fused = Rank1Reranker(reranker, store=store, fusion_weight=0.5)  # settings go through Reranker.replace
    frame = fused(dl19["bm25"])
    expected = reranker.replace(fusion_weight=0.5).rerank_run(dl19["run"], dl19["corpus"], dl19["topics"],
                                                             depth=DEPTH, progress=False, store=store).scores()
    assert [expected[q][d] for q, d in zip(frame["qid"], frame["docno"])] == list(frame["score"])

    qid = dl19["topics_frame"]["qid"][0]
    one = dl19["bm25"][dl19["bm25"]["qid"] == qid].drop(columns="score")  # the first stage's rank only
    thinking = Rank1Reranker(reranker, depth=2, reasoning=True, mode="reasoning", budget=4)
    out = thinking(one)
    assert list(out.columns) == [*one.columns.drop("rank"), "score", "reasoning", "rank"]
    below = out[out["score"] < 0]  # below the depth: first-stage order, scores -1, -2, ...
    assert list(below["score"]) == [-float(i) for i in range(1, DEPTH - 1)] and set(below["reasoning"]) == {""}
    assert list(below["docno"]) == list(one["docno"])[2:]
    judged = out[out["score"] >= 0]
    assert len(judged) == 2 and all(isinstance(r, str) for r in judged["reasoning"])
    store.close()


def test_a_fully_stored_experiment_never_loads_the_model(reranker: Any, smollm2_ref: Any, dl19: dict[str, Any],
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built from settings with a store that holds every pair, the transformer answers from the store without
    creating a backend, with the scores of ``rerank_run``."""
    import rank1.reranker

    path = tmp_path / "full.sqlite"
    with ScoreStore(path) as store:  # filled by the loaded fixture
        expected = reranker.rerank_run(dl19["run"], dl19["corpus"], dl19["topics"], depth=DEPTH, progress=False,
                                       store=store).scores()

    def no_backend(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded although every pair was stored")

    monkeypatch.setattr(rank1.reranker, "create_backend", no_backend)
    rank1 = Rank1Reranker(store=path, model=smollm2_ref.name, cache_dir=str(Path(smollm2_ref.path).parent),
                          mode="direct", fusion_weight=0.0)
    assert not rank1.reranker.loaded
    frame = rank1(dl19["bm25"])
    assert [expected[q][d] for q, d in zip(frame["qid"], frame["docno"])] == list(frame["score"])
    assert not rank1.reranker.loaded


def test_bad_frames_fail_with_a_clear_error(reranker: Any, dl19: dict[str, Any]) -> None:
    rank1 = Rank1Reranker(reranker)
    empty = rank1(dl19["bm25"].iloc[:0])
    assert empty.empty and {"score", "rank"} <= set(empty.columns)
    with pytest.raises(Exception, match="text"):
        rank1(dl19["bm25"].drop(columns="text"))
    twice = pd.concat([dl19["bm25"].iloc[:2], dl19["bm25"].iloc[:1]])
    with pytest.raises(ValueError, match="occurs twice"):
        rank1(twice)
    with pytest.raises(ValueError, match="depth must be at least 1"):
        Rank1Reranker(reranker, depth=0)
