"""Every setting of a reranker, in one frozen dataclass validated once, when it is made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from rank1.backends import BACKENDS, check_options
from rank1.models import DEFAULT_MODEL
from rank1.prompts import TEMPLATES
from rank1.scoring import DEFAULT_BUDGET, MODES
from rank1.students import recommended_settings

RERANK_MODES: tuple[str, ...] = (*MODES, "adaptive")
"""Reranker modes: the backend modes and ``adaptive`` (direct first, reasoning where it matters)."""

DEFAULT_EMBEDDED_TEMPLATE = "rank1"
"""Template for the embedded instruct models: Rank1's raw prompt, as good as the chat templates and faster
(a shorter prompt); the measurement is in benchmarks/README.md ("Reranking quality")."""

@dataclass(frozen=True)
class RerankerConfig:
    """Every setting of a :class:`~rank1.reranker.Reranker`; the defaults are the CLI's defaults.

    Attributes:
        model: Model spec: an embedded model's name, a local directory, a ``.gguf`` file or a hub id.
        backend: Backend name (``transformers`` or ``vllm``).
        mode: ``direct`` (no reasoning, one forward pass), ``reasoning``, or ``adaptive`` (direct for every
            pair, then reasoning for the pairs that can change the ranking; see :mod:`rank1.adaptive`).
            ``None``: the model's measured-best mode (a shipped student's ``mode``), else ``reasoning``.
        budget: Most reasoning tokens per pair (reasoning and adaptive modes).
        template: Prompt template name; ``None`` picks the raw Rank1 template (``rank1``), measured on DL19
            to be as good as the chat templates for the embedded instruct models (``benchmarks/README.md``).
        batch_size: Pairs per forward pass.
        max_passage_tokens: Passages are truncated to this many tokens (each cut is counted).
        fusion_weight: Weight ``w`` of the first-stage score in ``(1-w)*P(true) + w*minmax(first stage)``;
            0 ranks by P(true) alone. ``None``: a shipped student's weight (chosen on the MS MARCO dev
            split), else 0. Both ``None`` fields are resolved when the config is made.
        cache_dir: Where converted models are cached (default ``~/.cache/rank1/models``).
        backend_options: Passed to the backend (``dtype``, ``device``, ``quantize``...).
        adaptive_top: Adaptive mode: reason on this many top pairs of each query (by direct P(true)).
        adaptive_band: Adaptive mode: also reason on pairs whose direct P(true) is within this of 0.5.
        direct_blend: Reasoning and adaptive modes: a reasoned pair scores ``(1 - b) * P(true) after reasoning +
            b * P(true) in direct mode`` (one extra forward pass a pair, no generation; both judgements are
            stored under their own mode), which keeps the graded direct score beside the polarized reasoning
            one. 0: P(true) after reasoning alone; ``None``: the model's (a shipped student's, chosen on dev;
            else 0).
        contrast: Counter-query contrast weight ``w`` (:mod:`rank1.counter`): a pair of a query with a negation
            or exclusion scores ``(P(true) - w * P(true | the query with it flipped) + w) / (1 + w)``, the flipped
            query made by rule and judged in direct mode (one extra forward pass a pair). 0: off; ``None``: the
            model's (a shipped student's, chosen on dev: 1.5 for the default; else 0).
    """

    model: str = DEFAULT_MODEL
    backend: str = "transformers"
    mode: str | None = None
    budget: int = DEFAULT_BUDGET
    template: str | None = None
    batch_size: int = 8
    max_passage_tokens: int = 512
    fusion_weight: float | None = None
    cache_dir: str | None = None
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    adaptive_top: int = 10
    adaptive_band: float = 0.0
    direct_blend: float | None = None
    contrast: float | None = None

    @property
    def chunk_batches(self) -> int:
        """Batches judged (and stored) at a time by default: direct mode judges 16 (its length buckets and
        shared query heads work over a whole chunk; a chunk is a minute or two on a CPU), the modes that
        reason 4 (their batches are slower)."""
        return 16 if self.mode == "direct" else 4

    def __post_init__(self) -> None:
        """Fill ``mode``, ``fusion_weight``, ``direct_blend`` and ``contrast`` left at ``None`` from the model's
        recommendation (no blend in direct mode), then check every setting, so that a bad one fails before any
        input is read or model loaded."""
        mode, weight, blend, contrast = recommended_settings(self.model)
        if self.contrast is None:
            object.__setattr__(self, "contrast", contrast)
        if self.mode is None:
            object.__setattr__(self, "mode", mode)
        if self.fusion_weight is None:
            object.__setattr__(self, "fusion_weight", weight)
        if self.direct_blend is None:
            object.__setattr__(self, "direct_blend", 0.0 if self.mode == "direct" else blend)
        if self.mode not in RERANK_MODES:
            raise ValueError(f"mode must be one of {', '.join(RERANK_MODES)}, not {self.mode!r}")
        if self.adaptive_top < 0 or not 0.0 <= self.adaptive_band <= 0.5:
            raise ValueError("adaptive_top must be at least 0 and adaptive_band lie in [0, 0.5]")
        if not 0.0 <= self.direct_blend <= 1.0:
            raise ValueError(f"direct_blend must lie in [0, 1], not {self.direct_blend}")
        if self.direct_blend and self.mode == "direct":
            raise ValueError("direct_blend is for the reasoning and adaptive modes (direct mode has no reasoning)")
        if not 0.0 <= self.contrast <= 4.0:
            raise ValueError(f"contrast must lie in [0, 4], not {self.contrast}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        if self.template is not None and self.template not in TEMPLATES:
            raise ValueError(f"unknown template {self.template!r}; known: {', '.join(TEMPLATES)}")
        for name in ("budget", "batch_size", "max_passage_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ValueError(f"fusion_weight must lie in [0, 1], not {self.fusion_weight}")
        check_options(self.backend, self.backend_options)
