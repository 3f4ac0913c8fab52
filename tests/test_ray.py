"""The Ray engine on a real local Ray cluster: the same run and traces files as the single-process path, with
one actor killed mid-job, and after a killed job is run again (judging only what is missing)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import pytest

from rank1.engines import make_engine
from rank1.pipeline import SAMPLE_DIR, write_outputs
from rank1.retrieve import retrieve

pytestmark = pytest.mark.slow

CORPUS, TOPICS = SAMPLE_DIR / "corpus.jsonl", SAMPLE_DIR / "topics.tsv"
DEPTH, BATCH, CHUNK = 8, 2, 4
SUMMARY = re.compile(r"(\d+) pairs \((\d+) from the cache, (\d+) judged")


class Job(NamedTuple):
    """The inputs, the settings, and the single-process job's outputs."""

    dir: Path
    run: dict[str, dict[str, float]]
    corpus: Any
    topics: Any
    config: Any
    reference: Path
    pairs: int


def _rows(cache: Path) -> dict[tuple[str, str], float]:
    """(query sha256, passage sha256) -> created_at of every stored judgement."""
    if not cache.exists():
        return {}
    conn = sqlite3.connect(cache, timeout=10)
    try:
        return {(q, p): t for q, p, t in
                conn.execute("SELECT query_sha256, passage_sha256, created_at FROM judgements").fetchall()}
    except sqlite3.OperationalError:  # the table is not there yet
        return {}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A real local Ray cluster (2 CPUs, loopback) for the module; yields its address."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False,
             logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, smollm2_ref: Any) -> Job:
    """BM25 top 8 of the six sample queries (a few dozen pairs), reranked in this process (direct mode)."""
    from rank1.io import read_corpus, read_run, read_topics
    from rank1.reranker import Reranker, RerankerConfig

    directory = tmp_path_factory.mktemp("ray")
    retrieve(CORPUS, TOPICS, directory / "bm25.trec", k=DEPTH, progress=False)
    config = RerankerConfig(model=smollm2_ref.name, cache_dir=str(Path(smollm2_ref.path).parent), mode="direct",
                            batch_size=BATCH)
    run, corpus, topics = read_run(directory / "bm25.trec"), read_corpus(CORPUS), read_topics(TOPICS)
    result = Reranker(config).rerank_run(run, corpus, topics, depth=DEPTH, progress=False, chunk_size=CHUNK)
    reference = directory / "local.trec"
    write_outputs(result, reference, reference.with_suffix(".jsonl"), "rank1")
    assert result.stats.judged == result.stats.pairs >= 30
    return Job(directory, run, corpus, topics, config, reference, result.stats.pairs)


def _rerank_on_ray(job: Job, out: Path, cache: Path, actors: int = 2) -> Any:
    """The Ray path through the Python API, writing ``out`` and its traces; returns the result."""
    from rank1.reranker import Reranker
    from rank1.store import ScoreStore

    reranker = Reranker(job.config, load=False)
    with ScoreStore(cache) as store:
        result = reranker.rerank_run(job.run, job.corpus, job.topics, depth=DEPTH, progress=False, store=store,
                                     chunk_size=CHUNK, engine=make_engine("ray", actors=actors))
    assert not reranker.loaded  # the driver planned and wrote, the actors judged
    write_outputs(result, out, out.with_suffix(".jsonl"), "rank1")
    return result


SCORE_TOLERANCE = 1e-5
"""How far a score may move between engines: the local path and the actors judge the same pairs with other
thread counts, and on CPUs with AMX/AVX512-BF16 the kernels then reduce in another order (README,
"Outputs are deterministic")."""


def _same_outputs(out: Path, reference: Path) -> None:
    """Run and traces agree with ``reference`` within :data:`SCORE_TOLERANCE`: every line names the same
    query and document, ranks may differ only between documents whose reference scores are within the
    tolerance, and every other trace field is equal."""
    import json

    def run_rows(path: Path) -> dict[tuple[str, str], tuple[int, float]]:
        rows = [line.split() for line in path.read_text().splitlines()]
        return {(r[0], r[2]): (int(r[3]), float(r[4])) for r in rows}

    got, ref = run_rows(out), run_rows(reference)
    assert got.keys() == ref.keys()
    for key, (rank, score) in got.items():
        assert abs(score - ref[key][1]) <= SCORE_TOLERANCE, (key, score, ref[key][1])
        if rank != ref[key][0]:  # a swap is only allowed between near-ties
            other = next(k for k, (r, _) in ref.items() if k[0] == key[0] and r == rank)
            assert abs(ref[other][1] - ref[key][1]) <= 2 * SCORE_TOLERANCE, (key, other)
    traces = [[json.loads(x) for x in p.with_suffix(".jsonl").read_text().splitlines()] for p in (out, reference)]
    by_pair = [{(t["qid"], t["docid"]): t for t in rows} for rows in traces]
    assert by_pair[0].keys() == by_pair[1].keys()
    for key, mine in by_pair[0].items():
        theirs = by_pair[1][key]
        for name in ("score", "p_true"):
            assert abs(mine.pop(name) - theirs.pop(name)) <= SCORE_TOLERANCE, (key, name)
        mine.pop("rank"), theirs.pop("rank")
        assert mine == theirs


def _identical_outputs(out: Path, reference: Path) -> None:
    """Byte-identical run and traces: what a rerun from the score store must give."""
    assert out.read_bytes() == reference.read_bytes()
    assert out.with_suffix(".jsonl").read_bytes() == reference.with_suffix(".jsonl").read_bytes()


def test_ray_path_writes_the_same_run_and_traces_as_the_local_path(cluster: str, job: Job, tmp_path: Path) -> None:
    out, cache = tmp_path / "ray.trec", tmp_path / "ray.sqlite"
    result = _rerank_on_ray(job, out, cache)
    assert (result.stats.pairs, result.stats.judged, result.stats.cached) == (job.pairs, job.pairs, 0)
    _same_outputs(out, job.reference)
    assert len(_rows(cache)) == job.pairs

    again = _rerank_on_ray(job, tmp_path / "again.trec", cache)  # all stored: nothing goes to the cluster
    assert (again.stats.cached, again.stats.judged) == (job.pairs, 0)
    _identical_outputs(tmp_path / "again.trec", out)


def _chunk_judges() -> list[Any]:
    """The Ray worker processes (children of this process's raylet) that hold a ChunkJudge actor."""
    import psutil

    found = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "ChunkJudge" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_an_actor_killed_mid_job_is_replaced_and_the_output_is_the_same(
    cluster: str, job: Job, tmp_path: Path
) -> None:
    out, cache = tmp_path / "killed.trec", tmp_path / "killed.sqlite"
    state: dict[str, Any] = {}

    def kill_one_actor_after_two_chunks() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and "stop" not in state:
            stored = _rows(cache)
            judges = _chunk_judges()
            if len(stored) >= 2 * CHUNK and judges:
                state["stored"] = stored
                judges[0].send_signal(signal.SIGKILL)
                state["killed"] = judges[0].pid
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_actor_after_two_chunks, daemon=True)
    killer.start()
    try:
        result = _rerank_on_ray(job, out, cache)
    finally:
        state["stop"] = True
        killer.join()
    assert "killed" in state, "no ChunkJudge actor was found to kill"
    assert len(state["stored"]) < job.pairs, "the job had finished before the actor was killed"
    assert result.stats.judged == job.pairs
    _same_outputs(out, job.reference)
    after = _rows(cache)
    assert len(after) == job.pairs
    assert all(after[k] == t for k, t in state["stored"].items())  # no stored pair written again


def test_a_killed_cli_job_on_the_cluster_resumes_where_it_stopped(cluster: str, job: Job, tmp_path: Path) -> None:
    """``rank1 rerank --engine ray --ray-address`` killed with SIGKILL, then run again: only the missing
    pairs go to the cluster, and the files are the single-process path's."""
    out, cache = tmp_path / "cli.trec", tmp_path / "cli.sqlite"
    c = job.config
    argv = [sys.executable, "-m", "rank1.cli", "rerank", "--run", str(job.dir / "bm25.trec"), "--corpus", str(CORPUS),
            "--topics", str(TOPICS), "--out", str(out), "--traces", str(out.with_suffix(".jsonl")),
            "--model", c.model, "--cache-dir", c.cache_dir, "--mode", "direct", "--depth", str(DEPTH),
            "--batch-size", str(BATCH), "--chunk-size", str(CHUNK), "--cache", str(cache), "--no-progress",
            "--engine", "ray", "--ray-address", cluster, "--actors", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        while proc.poll() is None and len(_rows(cache)) < 2 * CHUNK:
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the job ended before it was killed: {stderr.decode()}"
    assert not out.exists()
    stored = _rows(cache)
    assert 2 * CHUNK <= len(stored) < job.pairs

    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    match = SUMMARY.search(done.stdout)
    assert match, done.stdout
    assert tuple(map(int, match.groups())) == (job.pairs, len(stored), job.pairs - len(stored))
    _same_outputs(out, job.reference)
    after = _rows(cache)
    assert len(after) == job.pairs and all(after[k] == t for k, t in stored.items())


def test_an_actor_whose_model_differs_from_the_drivers_refuses_to_judge(cluster: str, job: Job) -> None:
    """A node holding another version of the model must not fill the store with its scores."""
    import dataclasses

    from rank1.reranker import Reranker

    planner = Reranker(job.config, load=False)
    planner.model_ref = dataclasses.replace(planner.model_ref, fingerprint="another-version")
    with pytest.raises(Exception, match="model differs from the driver's"):
        planner.rerank_run(job.run, job.corpus, job.topics, depth=DEPTH, progress=False, chunk_size=CHUNK,
                           engine=make_engine("ray"))


def test_a_pair_returned_twice_is_kept_and_stored_once(tmp_path: Path) -> None:
    """What a retried Ray task can do (send rows of a chunk again) leaves one judgement and one stored row."""
    from rank1.engines.ray import RayEngine
    from rank1.reranker import Reranker
    from rank1.scoring import Judgement
    from rank1.store import ScoreStore

    class Resent(RayEngine):
        def stream(self, reranker: Any, chunks: Any) -> Iterator[list[tuple[int, Judgement]]]:
            assert [len(c) for c in chunks] == [2, 2, 1]
            yield [(0, Judgement(0.5)), (1, Judgement(0.25))]
            yield [(2, Judgement(0.75)), (0, Judgement(0.5)), (3, Judgement(0.125)), (3, Judgement(0.125))]
            yield [(4, Judgement(1.0)), (1, Judgement(0.25))]

    planner = Reranker(mode="direct", load=False)
    keys = [planner.store_settings.key("q", f"passage {i}") for i in range(5)]
    texts = {k: ("q", f"passage {i}") for i, k in enumerate(keys)}
    with ScoreStore(tmp_path / "s.sqlite") as store:
        puts: list[int] = []
        put_many = store.put_many
        store.put_many = lambda items: puts.append(put_many(items)) or puts[-1]  # type: ignore[method-assign]
        out = Resent().judge_chunks(planner, keys, texts, store, 2, progress=False)
        assert [out[k].score for k in keys] == [0.5, 0.25, 0.75, 0.125, 1.0]
        assert puts == [2, 2, 1] and store.count() == 5

    class Lost(RayEngine):
        def stream(self, reranker: Any, chunks: Any) -> Iterator[list[tuple[int, Judgement]]]:
            yield [(0, Judgement(0.5)), (1, Judgement(0.25))]

    with pytest.raises(RuntimeError, match="returned 2 of 5 judgements"):
        Lost().judge_chunks(planner, keys, texts, None, 2, progress=False)


def test_adaptive_mode_runs_both_of_its_stages_on_ray(cluster: str, job: Job, tmp_path: Path) -> None:
    """The cascade's direct and reasoning stages are two jobs on the pool: the driver never loads the model,
    and the outputs match the single-process cascade's (two queries, one reasoned pair each)."""
    from dataclasses import replace

    from rank1.reranker import Reranker

    config = replace(job.config, mode="adaptive", budget=8, adaptive_top=1)
    run = dict(list(job.run.items())[:2])
    local = Reranker(config).rerank_run(run, job.corpus, job.topics, depth=DEPTH, progress=False, chunk_size=CHUNK)
    write_outputs(local, tmp_path / "local.trec", tmp_path / "local.jsonl", "rank1")
    driver = Reranker(config, load=False)
    on_ray = driver.rerank_run(run, job.corpus, job.topics, depth=DEPTH, progress=False, chunk_size=CHUNK,
                               engine=make_engine("ray", actors=1))
    assert not driver.loaded
    write_outputs(on_ray, tmp_path / "ray.trec", tmp_path / "ray.jsonl", "rank1")
    _same_outputs(tmp_path / "ray.trec", tmp_path / "local.trec")
    direct_pairs = sum(min(DEPTH, len(docs)) for docs in run.values())
    assert on_ray.stats.judged == local.stats.judged == direct_pairs + 2  # one reasoning pair per query
    assert on_ray.meta["mode"] == "adaptive" and on_ray.stats.generated_tokens > 0


def test_ray_options_are_checked_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="--actors: only with --engine ray"):
        make_engine("local", actors=2)
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        make_engine("spark")
    with pytest.raises(ValueError, match="--actors must be at least 1"):
        make_engine("ray", actors=0)
