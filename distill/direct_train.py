"""The labels student: LoRA training of the score direct mode reads, on query groups, resumable on a CPU.

Direct mode scores a pair as P(true) = sigmoid(l_true - l_false), the two answer logits read after
``prompt + "\\n</think>"`` (:attr:`rank1.backends.base.JudgeSettings.close_empty`). This trainer optimises
exactly that number: each step takes query groups (one relevant passage first, then hard negatives; see
:mod:`distill.msmarco`), renders every pair with the model's template and passage truncation
(:class:`~rank1.backends.base.PromptBuilder`, so training sees the bytes inference scores), runs one forward
pass keeping only the last position's logits, and minimises

* a listwise softmax cross-entropy over each group's ``l_true - l_false`` (the relevant passage first), and
* ``pointwise_weight`` x binary cross-entropy of P(true) against the labels (keeps P(true) calibrated,
  which adaptive mode's ``|P(true) - 0.5|`` relies on).

It runs on transformers' ``Trainer`` with a peft LoRA adapter, saving a checkpoint every ``save_steps``
optimiser steps; calling :func:`train_direct` again with the same ``out_dir`` resumes from the newest one
(weights, optimiser, schedule, data position, RNG). The dtype follows the CPU
(:func:`distill.lora.train_dtype`). Given reasoning traces, each step also trains on a few of them
(:mod:`distill.joint`), so that one adapter serves both modes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from distill.joint import JointTraces, TraceCollator, loss_parts
from distill.lora import TrainResult, latest_checkpoint, lora_model, loss_history, silenced, step_echo, train_dtype
from distill.msmarco import Group
from distill.records import Trace

_JOINT_FIELDS = ("trace_rows", "traces_drawn", "loss_parts")  # in train_log.json only when traces were given


@dataclass(frozen=True)
class DirectTrainConfig:
    """Settings of the labels student (defaults: measured on a 2-core CPU, see ``benchmarks/README.md``).

    Attributes:
        lora_rank: LoRA rank.
        lora_alpha: LoRA alpha.
        lora_dropout: LoRA dropout.
        target_modules: Linear layers that get adapters.
        layers: Train only the top ``layers`` transformer blocks (0: all). Backward stops below them, so
            fewer layers is cheaper per step.
        learning_rate: Peak learning rate (linear warmup, cosine decay).
        warmup: Warmup as a fraction of the steps.
        groups_per_step: Query groups per optimiser step (one forward of ``groups_per_step x group size``).
        max_steps: Optimiser steps (-1: one epoch over the groups).
        max_passage_tokens: Passages are cut to this many tokens (as ``rank1 rerank --max-passage-tokens``).
        pointwise_weight: Weight of the pointwise BCE term beside the listwise term.
        dtype: ``"auto"`` (:func:`~distill.lora.train_dtype`), ``"float32"`` or ``"bfloat16"``.
        save_steps: Checkpoint every this many steps (the two newest are kept).
        seed: Seed of LoRA initialisation and dropout.
        template: Raw prompt template.
        init_adapter: Start from this adapter's LoRA weights (a folder with ``adapter_model.safetensors``, e.g. a
            checkpoint of an earlier run with the same LoRA settings) instead of a fresh initialisation: a new
            schedule on top of an earlier phase.
        grow: With ``init_adapter``: these settings may put adapters on more blocks or layers than it has (same
            rank); the extra ones start fresh (B = 0), so training starts exactly at ``init_adapter``'s model.
        trace_weight: With traces (joint training, :mod:`distill.joint`): weight of their loss.
        traces_per_step: With traces: trace rows per optimiser step.
        max_trace_tokens: With traces: rows are cut to about this many tokens (the passage is cut).
    """

    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    layers: int = 0
    learning_rate: float = 2e-4
    warmup: float = 0.05
    groups_per_step: int = 2
    max_steps: int = -1
    max_passage_tokens: int = 160
    pointwise_weight: float = 0.5
    dtype: str = "auto"
    save_steps: int = 10
    seed: int = 0
    template: str = "rank1"
    init_adapter: str | None = None
    grow: bool = False
    trace_weight: float = 0.5
    traces_per_step: int = 2
    max_trace_tokens: int = 384


class _GroupData:
    """A map-style dataset of ``(index, group)`` (the collator renders them)."""

    def __init__(self, groups: Sequence[Group]) -> None:
        self.groups = list(groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> tuple[int, Group]:
        return i, self.groups[i]


class GroupCollator:
    """Renders groups into one left-padded batch plus labels, as the transformers backend scores them."""

    def __init__(self, tokenizer: Any, template: str, max_passage_tokens: int) -> None:
        from rank1.backends.base import JudgeSettings, PromptBuilder
        from rank1.prompts import get_template
        from rank1.scoring import answer_token_ids

        t = get_template(template)
        self.builder = PromptBuilder(t, tokenizer, max_passage_tokens)
        self.settings = JudgeSettings.for_template(t, mode="direct")
        self.tokenizer = tokenizer
        self.answer_ids = answer_token_ids(tokenizer, self.settings.answers)

    def encode(self, query: str, passages: Sequence[str]) -> list[list[int]]:
        """Token ids of each pair's direct-mode sequence (prompt, closed empty block)."""
        texts = [self.builder.build(query, p).text + self.settings.close_empty for p in passages]
        return self.tokenizer(texts, add_special_tokens=self.settings.add_special_tokens)["input_ids"]

    def __call__(self, items: Sequence[tuple[int, Group]]) -> dict[str, Any]:
        """One batch of ``(index, group)`` items: model inputs, ``labels``, ``group_size`` and ``group_index``."""
        import torch

        groups = [g for _, g in items]
        ids = [x for g in groups for x in self.encode(g.query, g.passages)]
        width, pad = max(map(len, ids)), self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        return {"input_ids": input_ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
                "labels": torch.tensor([lab for g in groups for lab in g.labels], dtype=torch.float32),
                "group_size": torch.tensor([len(g.labels) for g in groups]),
                "group_index": torch.tensor([i for i, _ in items])}


def direct_loss(diff: Any, labels: Any, group_size: Any, pointwise_weight: float) -> Any:
    """Listwise cross-entropy per group (relevant passage first) + weighted pointwise BCE on ``diff``.

    Args:
        diff: ``l_true - l_false`` per pair, groups concatenated.
        labels: 0/1 per pair.
        group_size: Pairs per group.
        pointwise_weight: Weight of the BCE term.
    """
    import torch
    import torch.nn.functional as F

    sizes = [int(s) for s in group_size]
    listwise = torch.stack([F.cross_entropy(chunk[None], torch.zeros(1, dtype=torch.long, device=diff.device))
                            for chunk in torch.split(diff, sizes)]).mean()
    pointwise = F.binary_cross_entropy_with_logits(diff, labels.to(diff.dtype))
    return listwise + pointwise_weight * pointwise


@dataclass
class DirectTrainResult(TrainResult):
    """A :class:`~distill.lora.TrainResult` (``rows``: groups) plus the training speed and the indices of the
    groups trained on, in order (both for this process only: after a resume, from the resume point on); with
    traces also their number, the trace rows trained on (this process) and ``(step, direct, trace)`` losses."""

    pairs_per_second: float = 0.0
    groups_drawn: list[int] = field(default_factory=list)
    trace_rows: int = 0
    traces_drawn: list[int] = field(default_factory=list)
    loss_parts: list[tuple[int, float, float]] = field(default_factory=list)


def training_arguments(config: DirectTrainConfig, n_groups: int, output_dir: str | Path, cuda: bool, dtype: str,
                       **overrides: Any) -> Any:
    """The transformers ``TrainingArguments`` of a :func:`train_direct` run over ``n_groups`` groups (the data
    order follows from them: :func:`drawn_groups` replays it)."""
    from transformers import TrainingArguments

    steps = config.max_steps if config.max_steps > 0 else math.ceil(n_groups / config.groups_per_step)
    settings: dict[str, Any] = dict(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=config.groups_per_step,
        learning_rate=config.learning_rate, lr_scheduler_type="cosine", warmup_steps=config.warmup,
        logging_steps=1, save_strategy="steps", save_steps=config.save_steps, save_total_limit=2,
        report_to="none", seed=config.seed, data_seed=config.seed, use_cpu=not cuda, bf16=dtype == "bfloat16",
        disable_tqdm=True, remove_unused_columns=False, dataloader_drop_last=False, weight_decay=0.0,
    )
    return TrainingArguments(**{**settings, **overrides})


def drawn_groups(n_groups: int, config: DirectTrainConfig) -> list[int]:
    """Which of ``n_groups`` groups a :func:`train_direct` run with ``config`` trains on, in order (indices into
    the groups it was given), so that a later phase can train on the others.

    The run's seeded data order is replayed with the same trainer settings, a tiny stand-in model and no
    forward passes (seconds). Checked on the shipped student's phase 3: the loss of the replayed first batch
    under the phase's starting weights equals the loss that run logged at step 1.
    """
    import tempfile

    from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer

    drawn: list[int] = []

    class _Replay(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            drawn.extend(inputs["index"])
            return next(model.parameters()).sum() * 0.0

    stand_in = Qwen2ForCausalLM(Qwen2Config(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                            num_attention_heads=1, num_key_value_heads=1))
    with tempfile.TemporaryDirectory() as tmp:
        args = training_arguments(config, n_groups, tmp, cuda=False, dtype="float32", save_strategy="no",
                                  logging_steps=10**9)
        trainer = silenced(_Replay(model=stand_in, args=args, train_dataset=list(range(n_groups)),
                                   data_collator=lambda batch: {"index": [int(i) for i in batch]}))
        trainer.train()
    return drawn


def train_direct(groups: Sequence[Group], base_model: str, out_dir: str | Path,
                 config: DirectTrainConfig = DirectTrainConfig(), echo: Callable[[str], None] | None = print,
                 extra_meta: dict[str, Any] | None = None, traces: Sequence[Trace] = ()) -> DirectTrainResult:
    """Train (or resume training) the labels student's LoRA adapter; save it in ``out_dir``.

    With ``traces`` each step also trains on ``config.traces_per_step`` reasoning rows (:mod:`distill.joint`),
    so the adapter learns reasoning mode too; without them the run is the plain labels student's.

    Args:
        groups: Training groups, in training order.
        base_model: Model spec of the base (embedded name, directory).
        out_dir: Adapter folder; checkpoints go to ``out_dir/checkpoints`` and a rerun resumes from them.
        config: Training settings.
        echo: Called with one line per logged step.
        extra_meta: Merged into ``train_log.json`` (e.g. data preparation counts).
        traces: Reasoning traces with an answer, for joint training (empty: none).
    """
    import torch

    from rank1.quiet import silence_bitsandbytes_notice

    silence_bitsandbytes_notice()  # Trainer imports bitsandbytes, whose optional-kernel notice is not the user's concern
    from transformers import Trainer

    from rank1.backends.transformers import load_model
    from rank1.models import resolve_model
    from rank1.progress import Stopwatch

    if not groups:
        raise ValueError("no training groups")
    timer, out = Stopwatch(), Path(out_dir)
    cuda = torch.cuda.is_available()
    dtype = train_dtype(config.dtype, cuda)
    ref = resolve_model(base_model)
    model, tokenizer = load_model(ref, dtype=dtype, device="cuda" if cuda else "cpu")
    model.config.use_cache = False
    model = lora_model(model, config.lora_rank, config.lora_alpha, config.lora_dropout, config.target_modules,
                       config.layers, seed=config.seed, init_adapter=config.init_adapter, grow=config.grow)
    collator = GroupCollator(tokenizer, config.template, config.max_passage_tokens)
    true_id, false_id = collator.answer_ids
    result = DirectTrainResult(str(out), rows=len(groups), config={**asdict(config), "dtype": dtype},
                               trace_rows=len(traces))
    joint = JointTraces(traces, TraceCollator(tokenizer, config.template, config.max_passage_tokens,
                                              config.max_trace_tokens),
                        config.trace_weight, config.traces_per_step, config.seed) if traces else None
    pairs_seen = [0]

    class _Trainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            labels, sizes = inputs.pop("labels"), inputs.pop("group_size")
            result.groups_drawn.extend(int(i) for i in inputs.pop("group_index"))
            logits = model(**inputs, logits_to_keep=1).logits[:, -1, :]
            diff = (logits[:, true_id] - logits[:, false_id]).float()
            pairs_seen[0] += len(labels)
            loss = direct_loss(diff, labels, sizes, config.pointwise_weight)
            if joint is not None:
                loss = joint.add(model, loss, self.state.global_step)
            return (loss, {"diff": diff}) if return_outputs else loss

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if joint is not None:
                joint.annotate(logs)
            super().log(logs, *args, **kwargs)

    args = training_arguments(config, len(groups), out / "checkpoints", cuda, dtype)

    def speed() -> str:
        return f"{pairs_seen[0] / max(timer.seconds, 1e-9):.2f} pairs/s"

    trainer = silenced(_Trainer(model=model, args=args, train_dataset=_GroupData(groups), data_collator=collator,
                                callbacks=[step_echo(echo, speed)]))
    result.resumed_from = latest_checkpoint(out)
    trainer.train(resume_from_checkpoint=result.resumed_from)
    result.steps = int(trainer.state.global_step)
    result.seconds = timer.seconds
    result.pairs_per_second = pairs_seen[0] / max(result.seconds, 1e-9)
    result.losses = loss_history(trainer)
    if joint is not None:
        result.traces_drawn, result.loss_parts = joint.drawn, loss_parts(trainer)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    meta = {"kind": "labels-student", "base_model": base_model, "base_fingerprint": ref.fingerprint,
            **(extra_meta or {}), **{k: v for k, v in asdict(result).items()
                                     if k != "adapter_dir" and (traces or k not in _JOINT_FIELDS)}}
    (out / "train_log.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return result
