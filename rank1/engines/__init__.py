"""Where the pairs of a rerank job are judged: in this process (``local``) or on a Ray cluster (``ray``).

An engine takes the chunks :meth:`rank1.reranker.Reranker.rerank_run` has planned (the missing pairs in run
order, cut ``size`` at a time) and returns a judgement for every pair, storing each finished chunk in the
score store as soon as it arrives. Planning, ordering and output writing stay in the reranker and the
pipeline, so every engine writes the same run and traces files. Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from rank1.reranker import Reranker
    from rank1.scoring import Judgement
    from rank1.store import ScoreStore, StoreKey

ENGINES: tuple[str, ...] = ("local", "ray")
"""The engine names of ``rank1 rerank --engine``."""


class JudgeEngine(Protocol):
    """Judges the missing pairs of a rerank job somewhere else than in the calling process."""

    def judge_chunks(
        self,
        reranker: "Reranker",
        keys: Sequence["StoreKey"],
        texts: Mapping["StoreKey", tuple[str, str]],
        store: "ScoreStore | None",
        size: int,
        progress: bool,
    ) -> dict["StoreKey", "Judgement"]:
        """Judge the pairs of ``keys`` in chunks of ``size`` (as the local path cuts them), putting each
        finished chunk into ``store``; returns one judgement per key."""
        ...


def chunked(keys: Sequence["StoreKey"], size: int) -> list[Sequence["StoreKey"]]:
    """``keys`` cut into consecutive chunks of ``size`` (the last one may be shorter)."""
    return [keys[start : start + size] for start in range(0, len(keys), size)]


def make_engine(
    name: str,
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
) -> JudgeEngine | None:
    """The engine called ``name`` with its options (what ``rank1 rerank --engine`` builds).

    Args:
        name: ``local`` (``None`` is returned: the reranker judges in this process) or ``ray``.
        address: Ray cluster address (``auto``, ``ray://host:10001``, ``host:6379``); ``None``: the
            cluster in ``$RAY_ADDRESS``, else a new local one.
        actors: Ray actors, each holding one model (default 1).
        gpus_per_actor: GPUs per actor (default 0: CPU); the vLLM backend uses them for tensor parallelism.
        cpus_per_actor: CPUs per actor (default 1).

    Raises:
        ValueError: An unknown engine, a bad option value, or a Ray option given with ``local``.
    """
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    options = {"address": address, "actors": actors, "gpus_per_actor": gpus_per_actor,
               "cpus_per_actor": cpus_per_actor}
    given = {k: v for k, v in options.items() if v is not None}
    if name == "local":
        if given:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given).replace("--address", "--ray-address")
            raise ValueError(f"{flags}: only with --engine ray")
        return None
    from rank1.engines.ray import RayEngine

    return RayEngine(**given)


__all__ = ["ENGINES", "JudgeEngine", "chunked", "make_engine"]
