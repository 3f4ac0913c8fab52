"""The exploration notebook: stripped in git, executed top to bottom on a small configuration; its display
helpers (``RerankResult.to_pandas`` / ``_repr_html_``, :mod:`rank1.display`) and the notebook progress bar."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from rank1.display import compare_runs, result_frame, result_html
from rank1.pipeline import SAMPLE_DIR
from rank1.progress import NotebookProgress, pair_progress
from rank1.reranker import RankedDoc, RerankResult, RerankStats
from rank1.scoring import Judgement

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
EXPLORE = NOTEBOOKS / "explore.ipynb"


def _strip_module() -> Any:
    spec = importlib.util.spec_from_file_location("strip_outputs", NOTEBOOKS / "strip_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture
def result() -> RerankResult:
    """Two queries: judged documents with short, long and hostile reasoning, and one below the depth."""
    long = "The passage talks about tides. " * 20
    run = {
        "q1": [RankedDoc("d2", 0.9, Judgement(0.9, "<script>alert(1)</script> & more", 12, truncated=True)),
               RankedDoc("d1", 0.2, Judgement(0.2, long, 256, fallback=True)),
               RankedDoc("d9", -1.0)],
        "q2": [RankedDoc("d3", 0.7, Judgement(0.7, "It does not answer.", 5, reasoned_score=0.1))],  # blended
    }
    stats = RerankStats(pairs=3, judged=3, truncated=1, fallbacks=1, generated_tokens=268, seconds=1.5)
    return RerankResult(run, stats, {"model": "m", "template": "rank1", "mode": "reasoning", "budget": 256})


def test_to_pandas_has_one_row_per_document(result: RerankResult) -> None:
    frame = result.to_pandas()
    assert list(frame.columns) == ["qid", "docid", "rank", "score", "p_true", "reasoning", "generated_tokens",
                                   "truncated", "fallback", "p_true_reasoned", "p_true_counter"]
    assert frame[["qid", "docid", "rank"]].values.tolist() == [["q1", "d2", 1], ["q1", "d1", 2], ["q1", "d9", 3],
                                                               ["q2", "d3", 1]]
    assert frame.p_true.iloc[0] == 0.9 and math.isnan(frame.p_true.iloc[2]) and frame.score.iloc[2] == -1.0
    assert frame.truncated.tolist() == [True, False, False, False]
    assert frame.fallback.tolist() == [False, True, False, False]
    assert frame.p_true_reasoned.iloc[3] == 0.1 and frame.p_true_reasoned.iloc[:3].isna().all()
    assert result.to_pandas(judged_only=True).docid.tolist() == ["d2", "d1", "d3"]
    assert result_frame(result).equals(frame)


def test_html_escapes_and_folds_reasoning(result: RerankResult) -> None:
    page = result._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert page.count("<details>") == 1  # only the long reasoning is folded
    assert "The passage talks about tides. " * 20 in page.replace("&#x27;", "'")
    assert "d9" not in page  # below the depth: no judgement, not in the table
    assert "truncated" in page and "fallback" in page and "mode=reasoning" in page
    assert "0.9000" in page and "3 judged pairs" in page
    assert page.count("reasoning disagrees") == 1 and "reasoning disagrees (P(true) 0.10)" in page


def test_html_caps_rows(result: RerankResult) -> None:
    page = result_html(result, max_rows=1)
    assert page.count("<tr>") == 2  # header and one row
    assert "2 more judged documents" in page


def test_compare_runs_per_query_delta() -> None:
    from rank1.metrics import evaluate
    from rank1.io import read_qrels

    qrels = read_qrels(SAMPLE_DIR / "qrels.txt")
    qid = next(iter(qrels))
    relevant = [d for d, g in qrels[qid].items() if g > 0]
    assert relevant
    good = {qid: {d: 1.0 / (i + 1) for i, d in enumerate(relevant)} | {"nope": 0.01}}
    bad = {qid: {"nope": 1.0} | {d: 0.5 / (i + 1) for i, d in enumerate(relevant)}}
    table = compare_runs({"bad": bad, "good": good}, qrels, "nDCG@10")
    assert table.index.tolist() == [qid] and list(table.columns) == ["bad", "good", "delta"]
    assert table.loc[qid, "good"] == pytest.approx(evaluate(good, qrels, ["nDCG@10"])["nDCG@10"])
    assert table.loc[qid, "delta"] == pytest.approx(table.loc[qid, "good"] - table.loc[qid, "bad"])
    assert table.loc[qid, "delta"] > 0


class _Handle:
    """Records what a display handle was updated with."""

    def __init__(self, first: dict[str, str]) -> None:
        self.updates = [first]

    def update(self, bundle: dict[str, str], raw: bool = False) -> None:
        assert raw
        self.updates.append(bundle)


def test_notebook_progress_updates_one_output_sparingly(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython.display

    handles: list[_Handle] = []

    def display(bundle: dict[str, str], raw: bool = False, display_id: bool = False) -> _Handle:
        assert raw and display_id
        handles.append(_Handle(bundle))
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr("rank1.progress.in_notebook", lambda: True)
    with pair_progress(1000, "direct m") as advance:
        for _ in range(1000):
            advance(1, 3)
    assert len(handles) == 1  # one output for the whole job
    updates = handles[0].updates
    assert len(updates) <= 10  # 1000 advances in well under a second: a handful of redraws, not 1000
    final = updates[-1]["text/plain"]
    assert "direct m" in final and "1000/1000" in final and "pairs/s" in final
    assert "<pre" in updates[-1]["text/html"] and "\x1b[" not in final


def test_notebook_progress_transient_clears(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython.display

    handles: list[_Handle] = []
    monkeypatch.setattr(IPython.display, "display",
                        lambda b, raw, display_id: handles.append(_Handle(b)) or handles[-1])
    with NotebookProgress(transient=True) as bar:
        bar.advance(bar.add_task("x", total=2), 2)
    assert handles[0].updates[-1] == {"text/plain": ""}


def test_notebooks_are_stripped() -> None:
    """Notebooks are committed without outputs; fix with ``python notebooks/strip_outputs.py``."""
    import nbformat

    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert EXPLORE in notebooks
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{path.name} holds outputs: run python notebooks/strip_outputs.py")
        assert not _strip_module().strip(nb), f"{path.name} holds run-time metadata: run notebooks/strip_outputs.py"


def test_strip_outputs_script(tmp_path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    output = new_output("execute_result", {"text/plain": "2"}, execution_count=3)
    nb = new_notebook(cells=[new_code_cell("1 + 1", execution_count=3, outputs=[output])])
    nb.metadata["widgets"] = {"state": {}}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    strip = _strip_module()
    assert strip.main(["--check", str(path)]) == 1
    assert strip.main([str(path)]) == 0
    assert strip.main(["--check", str(path)]) == 0
    cell = nbformat.read(path, as_version=4).cells[0]
    assert cell.outputs == [] and cell.execution_count is None and cell.source == "1 + 1"


def _kernel_manager(tmp_path: Path) -> Any:
    """A kernel manager whose only kernel is this interpreter (the venv's), whatever kernels the user has."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path / "kernels"
    write_kernel_spec(str(kernels / "rank1-test"))  # argv: sys.executable -m ipykernel_launcher
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    return KernelManager(kernel_name="rank1-test", kernel_spec_manager=specs)


@pytest.fixture(scope="module")
def executed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """explore.ipynb executed top to bottom, small configuration, with the fastest installed model."""
    import nbformat
    from nbclient import NotebookClient

    # The kernel imports this checkout, installed or not.
    env = {"RANK1_NB_FULL": "0", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    try:
        ref = request.getfixturevalue("smollm2_ref")
        env.update(RANK1_NB_MODEL=ref.name, RANK1_NB_CACHE_DIR=str(Path(ref.path).parent))
    except pytest.skip.Exception:
        pass  # the default model
    nb = nbformat.read(EXPLORE, as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        km = _kernel_manager(tmp_path_factory.mktemp("jupyter"))
        NotebookClient(nb, km=km, timeout=600, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return nb


def _outputs(nb: Any, marker: str) -> list[Any]:
    """The outputs of the code cell whose source contains ``marker``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, marker
    return cells[0].outputs


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(executed: Any) -> None:
    for cell in executed.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None
            assert not [o for o in cell.outputs if o.output_type == "error"]
            stderr = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stderr")
            assert "ipywidgets" not in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_notebook_shows_tables_plots_and_one_progress_output_per_job(executed: Any) -> None:
    rerank = _outputs(executed, "results = {name: reranker.rerank_run")
    bars = [o for o in rerank if o.output_type == "display_data" and "pairs/s" in o.data.get("text/plain", "")]
    collections = 1 + (REPO.parent / "shared" / "data" / "trec_dl" / "bm25_top100_dl19.json").is_file()
    assert len(bars) == collections and len(rerank) == collections + 1  # one output per job, then the result
    for bar in bars:  # each output was updated in place to the job's final state: "29/29   0.36 pairs/s"
        done, total = bar.data["text/plain"].split("pairs/s")[0].split()[-2].split("/")
        assert done == total and int(total) > 0, bar.data["text/plain"]
    table = rerank[-1].data["text/html"]
    assert "RerankResult" in table and "P(true)" in table
    peek = _outputs(executed, "peek = thinker.rerank_run")[-1].data["text/html"]
    assert "mode=reasoning" in peek and "reasoning tokens" in peek
    for marker in ("P(true) by relevance", "delta nDCG@10"):
        assert any("image/png" in o.get("data", {}) for o in _outputs(executed, marker)), marker
    means = _outputs(executed, "delta nDCG@10")[-1].data["text/plain"]
    assert "sample" in means and "BM25" in means and "rank1" in means
    budget = REPO / "benchmarks" / "results" / "budget.json"
    curve = _outputs(executed, "budget_points(BUDGET_JSON)")
    if budget.exists() and json.loads(budget.read_text()).get("points"):
        assert any("image/png" in o.get("data", {}) for o in curve)
    else:
        assert "budget.py" in "".join(o.get("text", "") for o in curve)
