"""Where the pairs of a rerank job are judged: in this process (``local``) or on a Ray cluster (``ray``).

An engine takes the chunks :meth:`rank1.reranker.Reranker.rerank_run` has planned (the missing pairs in run
order, cut ``size`` at a time) and returns a judgement for every pair, storing each finished chunk in the
score store as soon as it arrives. Planning, ordering and output writing stay in the reranker and the
pipeline, so every engine writes the same run and traces files. The contract is in
:mod:`rank1.engines.base`; the registry maps a name to ``"module:Class"``, so that nothing heavy (Ray) is
imported until it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from rank1.engines.base import JudgeEngine, PairJudge, chunked

ENGINES: dict[str, str] = {
    "local": "rank1.engines.local:LocalEngine",
    "ray": "rank1.engines.ray:RayEngine",
}
"""The engines of ``rank1 rerank --engine``, by name."""

_RAY_FLAGS = {"address": "--ray-address", "actors": "--actors", "gpus_per_actor": "--gpus-per-actor",
              "cpus_per_actor": "--cpus-per-actor"}


def make_engine(name: str, **options: Any) -> JudgeEngine:
    """The engine called ``name`` with its options (what ``rank1 rerank --engine`` builds).

    Args:
        name: ``local`` (judge in this process) or ``ray``.
        **options: The engine's settings; ``None`` values count as not given. For ``ray`` (see
            :class:`rank1.engines.ray.RayEngine`): ``address``, ``actors``, ``gpus_per_actor``,
            ``cpus_per_actor``. ``local`` takes none.

    Raises:
        ValueError: An unknown engine, a bad option value, or an option the engine does not take.
    """
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    given = {k: v for k, v in options.items() if v is not None}
    module_name, class_name = ENGINES[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    known = set(getattr(cls, "__dataclass_fields__", {}))
    unknown = [k for k in given if k not in known]
    if unknown:
        flags = ", ".join(_RAY_FLAGS.get(k, k) for k in unknown)
        raise ValueError(f"{flags}: only with --engine ray" if name == "local" else f"{flags}: not an option of {name}")
    return cls(**given)


__all__ = ["ENGINES", "JudgeEngine", "PairJudge", "chunked", "make_engine"]
