"""Backend options: the base of each backend's options dataclass.

Each backend declares its options as a frozen dataclass derived from :class:`BackendOptions` (its
``options_class``): the field defaults are the backend's defaults (they are part of score-store keys, see
:func:`rank1.backends.option_defaults`), and ``__post_init__`` is the one place the values are checked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Mapping, TypeVar

from rank1.hardware import cpu_dtype_choice

OptionsT = TypeVar("OptionsT", bound="BackendOptions")


@dataclass(frozen=True)
class BackendOptions:
    """The options every backend takes.

    Attributes:
        dtype: ``"auto"`` (the backend's choice for the device) or a torch dtype name.
        trust_remote_code: Passed to transformers (and vLLM); off unless asked for.
    """

    dtype: str = "auto"
    trust_remote_code: bool = False

    NEUTRAL: ClassVar[tuple[str, ...]] = ()
    """Options that do not change judgements (only speed): left out of score-store keys."""
    BUDGET_FITS_CONTEXT: ClassVar[bool] = False
    """Whether a prompt is cut to leave the reasoning budget room in a fixed context (so that the same pair's
    prompt can differ between budgets); where not, the score store may answer one budget from another
    (:meth:`rank1.store.ScoreStore.get_many`)."""
    GPU_AUTO: ClassVar[str] = "auto"
    """What ``dtype="auto"`` means on a GPU (``"auto"``: the checkpoint's dtype)."""

    def on_cpu(self) -> bool:
        """Whether these options run the model on the CPU."""
        return True

    def fixed_auto(self) -> tuple[str, str] | None:
        """Where ``dtype="auto"`` does not follow the hardware (a quantized format, an engine's own precision),
        the dtype it means and why; ``None`` where it does. Backends override this one hook, and
        :meth:`resolved_dtype` and :meth:`dtype_summary` both read it."""
        return None

    def auto_choice(self) -> tuple[str, str]:
        """What ``dtype="auto"`` means with these options, and why: :meth:`fixed_auto` where it says, else on CPU
        the hardware's choice (:func:`rank1.hardware.cpu_dtype_choice`), on a GPU :attr:`GPU_AUTO`."""
        fixed = self.fixed_auto()
        if fixed is not None:
            return fixed
        if self.on_cpu():
            choice = cpu_dtype_choice()
            return choice.dtype, choice.reason
        return self.GPU_AUTO, "GPU"

    def resolved_dtype(self) -> str:
        """``dtype`` with ``"auto"`` replaced by what it means here (:meth:`auto_choice`)."""
        return self.auto_choice()[0] if self.dtype == "auto" else self.dtype

    def dtype_summary(self) -> str:
        """The dtype for run summaries, with the reason where ``"auto"`` chose it, e.g.
        ``float32 (auto: CPU has no bfloat16 matrix units ...)``."""
        if self.dtype != "auto":
            return self.dtype
        dtype, reason = self.auto_choice()
        return f"{dtype} (auto: {reason})"

    def float32_answers(self) -> bool:
        """Whether the answer logits are computed in float32 though the model runs in a lower precision (the
        output layer's answer rows in float32: :mod:`rank1.backends.head`); by default wherever the dtype is
        not float32."""
        return self.resolved_dtype() != "float32"

    def key_items(self) -> dict[str, Any]:
        """The options as they decide judgements, for score-store keys: every option but :attr:`NEUTRAL`,
        ``dtype`` resolved (so that a store filled on a bfloat16 machine is not read as float32 elsewhere), and
        ``answers=float32`` where :meth:`float32_answers` (bfloat16 judgements stored before it are not reused)."""
        items = {k: v for k, v in asdict(self).items() if k not in self.NEUTRAL}
        precision = {"answers": "float32"} if self.float32_answers() else {}
        return {**items, "dtype": self.resolved_dtype(), **precision}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every option with its default value."""
        return {f.name: f.default for f in fields(cls)}

    @classmethod
    def parse(cls: type[OptionsT], options: Mapping[str, Any]) -> OptionsT:
        """The checked options from ``{name: value}``; missing names take their defaults.

        Raises:
            ValueError: A name the backend does not take, or a value its checks refuse.
        """
        unknown = set(options) - set(cls.names())
        if unknown:
            raise ValueError(f"unknown backend options: {', '.join(sorted(unknown))} "
                             f"({cls.__name__} takes {', '.join(cls.names())})")
        return cls(**options)


@dataclass(frozen=True)
class EngineOptions(BackendOptions):
    """The options of an engine that computes around its own (quantized) weights: CTranslate2, OpenVINO.
    ``dtype`` may be ``"auto"`` (float32) or one of the engine's :attr:`DTYPES`; the answer logits are the engine's
    float32 output already.

    Attributes:
        threads: Threads per forward pass (0: the engine's default, every core); only speed, so not part of
            score-store keys.
    """

    threads: int = 0

    NEUTRAL: ClassVar[tuple[str, ...]] = ("threads",)
    ENGINE: ClassVar[str] = "this"
    """The backend's name, for error messages."""
    DTYPES: ClassVar[tuple[str, ...]] = ("float32",)
    """The precisions the engine can compute its activations in (the first is what ``"auto"`` means)."""

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", *self.DTYPES):
            raise ValueError(f"the {self.ENGINE} backend computes in {' or '.join(self.DTYPES)}; dtype "
                             f"{self.dtype!r} is not available (use {', '.join(('auto', *self.DTYPES))})")

    def fixed_auto(self) -> tuple[str, str]:
        """``"auto"`` means the first of :attr:`DTYPES`, the engine's own precision, on any hardware."""
        return self.DTYPES[0], f"the {self.ENGINE} engine's default precision"

    def float32_answers(self) -> bool:
        """The answer logits are the engine's float32 output already."""
        return False
