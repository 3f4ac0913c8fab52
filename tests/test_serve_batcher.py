"""``rank1 serve``'s micro-batching queue and settings checks on their own: fast, no model, no socket.

The queue is driven with plain functions as batches; the HTTP service over a real socket is
``tests/test_serve.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'rank1[serve]'")

from rank1.serve import ServeConfig  # noqa: E402
from rank1.serve.batcher import BatcherClosed, MicroBatcher, QueueFull  # noqa: E402



def _batches(jobs: list[int], run: Callable[[list[int]], list[int]],
             **kwargs: Any) -> tuple[list[Any], list[list[int]]]:
    """Submit ``jobs`` (each job is its weight) concurrently; the results and the batches that ran."""
    from concurrent.futures import ThreadPoolExecutor

    seen: list[list[int]] = []

    def run_batch(batch: list[int]) -> list[int]:
        seen.append(list(batch))
        return run(batch)

    async def main() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(run_batch, size=lambda j: j, executor=pool, **kwargs)
            batcher.start()
            results = await asyncio.gather(*(batcher.submit(j) for j in jobs), return_exceptions=True)
            await batcher.close()
            with pytest.raises(BatcherClosed):
                await batcher.submit(1)
            return results

    return asyncio.run(main()), seen


def _slow_double(batch: list[int]) -> list[int]:
    time.sleep(0.05)
    return [2 * j for j in batch]


def test_batcher_merges_concurrent_jobs_up_to_the_batch_size() -> None:
    results, seen = _batches([1, 2, 3, 1, 2, 3, 1, 2], _slow_double, max_batch=6, max_wait=0.05)
    assert results == [2, 4, 6, 2, 4, 6, 2, 4]  # every job gets its own result, in order
    assert [j for b in seen for j in b] == [1, 2, 3, 1, 2, 3, 1, 2]  # first come, first served
    assert len(seen) < 8 and all(sum(b) <= 6 for b in seen)


def test_batcher_runs_a_heavy_job_alone_and_never_splits_it() -> None:
    _, seen = _batches([2, 10, 2], _slow_double, max_batch=4, max_wait=0.01)
    assert [10] in seen and all(sum(b) <= 4 for b in seen if b != [10])


def test_batcher_passes_a_batch_error_to_its_jobs_and_keeps_going() -> None:
    calls = []

    def fail_first(batch: list[int]) -> list[int]:
        calls.append(batch)
        if len(calls) == 1:
            raise RuntimeError("model failed")
        return batch

    results, _ = _batches([5, 5], fail_first, max_batch=5, max_wait=0.0)
    assert isinstance(results[0], RuntimeError) and results[1] == 5


def test_batcher_refuses_work_beyond_its_queue() -> None:
    results, _ = _batches([3, 3, 3], _slow_double, max_batch=3, max_wait=0.0, max_queued=5)
    assert results[0] == 6 and isinstance(results[1], QueueFull) and isinstance(results[2], QueueFull)


def test_batcher_drops_a_cancelled_job_and_drains_on_close() -> None:
    from concurrent.futures import ThreadPoolExecutor

    seen: list[list[int]] = []

    async def main() -> tuple[int, int]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(lambda b: seen.append(b) or b, size=lambda j: 1, max_batch=8, max_wait=0.2,
                                   executor=pool)
            batcher.start()
            gone = asyncio.ensure_future(batcher.submit(1))
            kept = asyncio.ensure_future(batcher.submit(2))
            await asyncio.sleep(0.01)
            gone.cancel()
            await batcher.close()  # does not wait out max_wait: closing runs what is queued at once
            return await kept, batcher.batches

    assert asyncio.run(main()) == (2, 1) and seen == [[2]]


def test_serve_config_checks_its_limits() -> None:
    with pytest.raises(ValueError, match="--max-documents"):
        ServeConfig(max_documents=0)
    with pytest.raises(ValueError, match="--api-key"):
        ServeConfig(api_key=" ")


def test_cli_serve_rejects_bad_settings_before_loading() -> None:
    from typer.testing import CliRunner

    from rank1.cli import app

    result = CliRunner().invoke(app, ["serve", "--max-documents", "0"])
    assert result.exit_code == 2 and "--max-documents must be at least 1" in result.output
    assert "Traceback" not in result.output
