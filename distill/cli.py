"""``rank1 distill``: generate teacher traces, filter them, train a student, export it.

A thin typer shell over :mod:`distill`; heavy libraries are imported inside the commands. Registered in
:mod:`rank1.cli` as the ``distill`` sub-command; bad input ends with ``error: FILE:LINE: ...`` and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import typer

from rank1.cli_errors import fail_cleanly
from rank1.models import BASE_MODEL as DEFAULT_BASE
from rank1.students import MERGED_DTYPE

app = typer.Typer(help="Distillation: teacher traces -> filter -> student training -> export.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _echo(line: str) -> None:
    typer.echo(line, err=True)


@app.command()
def generate(
    out_path: Path = typer.Option(..., "--out", help="Traces JSONL: appended to; pairs already in it are skipped."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", help="Qrels for labels and positives."),
    candidates: Optional[Path] = typer.Option(None, "--candidates", help="rank_llm JSON: run, corpus and topics."),
    run: Optional[Path] = typer.Option(None, "--run", help="First-stage run (hard negatives from ranks 1-10)."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus with the run's documents."),
    topics: Optional[Path] = typer.Option(None, "--topics", help="Topics with the run's queries."),
    nevir_pairs: Optional[Path] = typer.Option(None, "--nevir-pairs", help="Also NevIR-style pairs (id,q1,q2,doc1,doc2)."),
    groups: list[Path] = typer.Option([], "--groups", help="Also training groups (`prepare` / `contrast` JSONL; "
                                      "repeatable): each group's relevant passage and --group-negatives others."),
    group_negatives: int = typer.Option(1, "--group-negatives", help="Non-relevant passages per group (--groups)."),
    positives: int = typer.Option(1, "--positives", help="Positives per query."),
    hard_top5: int = typer.Option(1, "--hard-top5", help="Hard negatives per query from ranks 1-5."),
    hard_6_10: int = typer.Option(1, "--hard-6-10", help="Hard negatives per query from ranks 6-10."),
    min_rel: int = typer.Option(1, "--min-rel", help="Smallest relevant grade."),
    judged_only: bool = typer.Option(False, "--judged-only", help="Negatives only among judged documents."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many pairs (seeded shuffle)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pair sampling."),
    model: str = typer.Option(DEFAULT_BASE, "--model", help="rank1 teacher: embedded name, folder, hub id."),
    backend: str = typer.Option("transformers", "--backend", help="rank1 teacher backend: transformers or vllm."),
    budget: int = typer.Option(1000, "--budget", help="rank1 teacher: most reasoning tokens (greedy decoding)."),
    dtype: str = typer.Option("auto", "--dtype", help="rank1 teacher dtype."),
    batch_size: int = typer.Option(8, "--batch-size", help="Pairs per teacher batch (and per append)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint instead of a rank1 teacher."),
    api_model: Optional[str] = typer.Option(None, "--api-model", help="Model name at the endpoint."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable with the API key."),
    temperature: float = typer.Option(0.3, "--temperature", help="Endpoint sampling temperature (Rank1: 0.3)."),
    max_tokens: int = typer.Option(1000, "--max-tokens", help="Endpoint: most new tokens (Rank1: 1000)."),
    workers: int = typer.Option(4, "--workers", help="Endpoint: requests in flight."),
    logprobs: bool = typer.Option(False, "--logprobs", help="Endpoint: ask for log-probabilities (records P(true))."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Sample training pairs and have a teacher write a reasoning trace for each (resumable)."""

    @fail_cleanly
    def body() -> None:
        from distill import sampling, teacher
        from rank1.io import read_qrels
        from rank1.metrics import read_nevir_pairs
        from rank1.pipeline import load_inputs
        from rank1.records import Document

        if base_url is not None and not api_model:
            raise ValueError("--base-url needs --api-model")
        pairs: list = []
        run_, topics_, corpus_ = ({}, {}, {})
        if qrels is not None:
            inputs = load_inputs(run, corpus, topics, candidates)
            run_, topics_, corpus_ = inputs.run, inputs.topics, inputs.corpus
            cfg = sampling.SamplingConfig(positives, hard_top5, hard_6_10, min_rel, judged_only, seed)
            pairs = sampling.sample_pairs(read_qrels(qrels), run_, cfg, available=corpus_)
        if nevir_pairs is not None:
            nt, nc, npairs = read_nevir_pairs(nevir_pairs)
            topics_, corpus_ = {**topics_, **nt}, {**corpus_, **nc}
            pairs += sampling.nevir_pairs(npairs)
        for path in groups:
            from distill.msmarco import read_groups

            gp, gt, gc = sampling.group_pairs(read_groups(path), group_negatives, seed, prefix=f"{path.stem}/")
            pairs, topics_ = pairs + gp, {**topics_, **gt}
            corpus_ = {**corpus_, **{d: Document(d, text) for d, text in gc.items()}}
        if not pairs:
            raise ValueError("no pairs: give --qrels (with a run), --nevir-pairs or --groups")
        pairs = sampling.shuffled(pairs, seed, limit) if limit is not None else pairs
        t = (teacher.ChatTeacher(base_url, api_model, api_key_env, temperature, max_tokens, seed, workers=workers,
                                 logprobs=logprobs) if base_url is not None else
             teacher.RerankerTeacher(model, backend, budget, batch_size=batch_size, dtype=dtype))
        stats = teacher.generate(pairs, topics_, {k: d.full_text for k, d in corpus_.items()}, t, out_path,
                                 batch_size=batch_size, progress=progress)
        typer.echo(f"{stats.pairs} pairs: {stats.skipped} already done, {stats.judged} judged, "
                   f"{stats.tokens} tokens in {stats.seconds:.1f}s -> {out_path}")

    body()


@app.command("filter")
def filter_cmd(
    traces: Path = typer.Argument(..., help="Traces JSONL from `rank1 distill generate`."),
    out_path: Path = typer.Option(..., "--out", help="Kept traces (JSONL, atomic)."),
    alpaca: Optional[Path] = typer.Option(None, "--alpaca", help="Also write the kept traces as alpaca JSON."),
    min_rel: int = typer.Option(1, "--min-rel", help="Smallest relevant grade."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Drop traces with more generated tokens."),
    max_chars: Optional[int] = typer.Option(None, "--max-chars", help="Drop traces with longer reasoning."),
    drop_unfinished: bool = typer.Option(False, "--drop-unfinished", help="Drop traces that hit the budget."),
    dedupe: bool = typer.Option(True, "--dedupe/--no-dedupe", help="Drop repeated pairs."),
    student: Optional[str] = typer.Option(None, "--student", help="Self-filtering: first-round student model."),
    student_mode: str = typer.Option("direct", "--student-mode", help="Student mode: direct or reasoning."),
    student_margin: float = typer.Option(0.0, "--student-margin", help="Drop only when the student is this sure."),
    student_keep: str = typer.Option("right", "--student-keep",
                                     help="right: drop what the student gets wrong; wrong: keep only that (hard "
                                          "pairs, STaR-style)."),
    held_out: Optional[list[Path]] = typer.Option(
        None, "--held-out", help="Dev groups JSONL (repeatable, e.g. `distill contrast --dev-out`): drop traces "
                                 "that show one of their queries or passages."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Drop traces that show a dev item, disagree with their label, are too long, repeat, or (optionally) a student
    gets wrong."""

    @fail_cleanly
    def body() -> None:
        from distill.filtering import FilterConfig, filter_traces, held_out_texts
        from distill.msmarco import read_groups
        from distill.records import read_traces, write_alpaca, write_traces

        items = read_traces(traces)
        dev = held_out_texts([g for f in held_out or [] for g in read_groups(f)])
        model = None
        if student is not None:
            from rank1 import Reranker

            model = Reranker(model=student, mode=student_mode)
        kept, report = filter_traces(items, FilterConfig(min_rel, drop_unfinished, max_tokens, max_chars, dedupe,
                                                          student_margin, student_keep, dev), model)
        write_traces(out_path, kept)
        if alpaca is not None:
            write_alpaca(alpaca, kept)
        typer.echo(json.dumps(report.as_dict()) if as_json else "\n".join(report.lines()))

    body()


@app.command()
def train(
    traces: Path = typer.Argument(..., help="Filtered traces JSONL (or alpaca JSON with --alpaca)."),
    out_path: Path = typer.Option(..., "--out", help="Adapter folder to write."),
    model: str = typer.Option(DEFAULT_BASE, "--model", help="Student base model."),
    preset: str = typer.Option("rank1", "--preset", help="rank1 (Rank1's settings) or cpu-demo (small, quick)."),
    alpaca_in: bool = typer.Option(False, "--alpaca", help="The input is alpaca rows (Rank1's released format)."),
    labels_only: bool = typer.Option(False, "--labels-only", help="Train on the answer alone, no reasoning."),
    epochs: Optional[float] = typer.Option(None, "--epochs"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    rank: Optional[int] = typer.Option(None, "--lora-rank"),
    alpha: Optional[int] = typer.Option(None, "--lora-alpha"),
    cutoff: Optional[int] = typer.Option(None, "--cutoff", help="Longest sequence in tokens."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    qlora: bool = typer.Option(False, "--qlora", help="4-bit base model (bitsandbytes, CUDA)."),
    layers: Optional[int] = typer.Option(None, "--layers", help="LoRA on the top N blocks only (0: all)."),
    init_adapter: Optional[Path] = typer.Option(None, "--init-adapter",
                                                help="Start from this adapter (same rank, modules, blocks)."),
    save_steps: Optional[int] = typer.Option(None, "--save-steps",
                                             help="Checkpoint every N steps; rerunning with the same --out resumes."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fine-tune a LoRA adapter on the traces (loss on reasoning + answer, or on the answer alone)."""

    @fail_cleanly
    def body() -> None:
        from distill import records
        from distill.train import preset as make_preset, train as run_train

        items = records.read_alpaca(traces) if alpaca_in else records.read_traces(traces)
        cfg = make_preset(preset, epochs=epochs, learning_rate=lr, max_steps=max_steps, lora_rank=rank,
                          lora_alpha=alpha, cutoff=cutoff, grad_accum=grad_accum, batch_size=batch_size,
                          with_reasoning=not labels_only, quantize="4bit" if qlora else None, seed=seed,
                          layers=layers, init_adapter=str(init_adapter) if init_adapter else None,
                          save_steps=save_steps)
        result = run_train(items, model, out_path, cfg, echo=_echo)
        first, last = (result.losses[0][1], result.losses[-1][1]) if result.losses else (float("nan"),) * 2
        typer.echo(f"{result.rows} rows, {result.steps} steps, loss {first:.4f} -> {last:.4f}, "
                   f"{result.seconds:.0f}s -> {out_path}")

    body()


from distill.cli_data import COMMANDS as _DATA_COMMANDS  # noqa: E402 (after app: registered in this order)

for _name, _command in _DATA_COMMANDS.items():
    app.command(_name)(_command)


def _groups_after(groups: Path, skip_groups: int, mix: Sequence[Path] = ()) -> list[Any]:
    """The groups of ``groups`` after the first ``skip_groups`` (those an earlier phase saw), taken in turn with
    the groups of each ``mix`` file (:func:`distill.msmarco.interleave`); at least one."""
    from distill.msmarco import interleave, read_groups

    rows = read_groups(groups)[skip_groups:]
    if not rows:
        raise ValueError(f"{groups}: no groups left after --skip-groups {skip_groups}")
    return interleave([rows, *(read_groups(m) for m in mix)]) if mix else rows


@app.command("train-labels")
def train_labels(
    groups: Path = typer.Argument(..., help="Training groups JSONL from `rank1 distill prepare`."),
    out_path: Path = typer.Option(..., "--out", help="Adapter folder; rerunning with the same folder resumes."),
    model: str = typer.Option(DEFAULT_BASE, "--model", help="Student base model."),
    max_steps: int = typer.Option(-1, "--max-steps", help="Optimiser steps (-1: one epoch)."),
    groups_per_step: int = typer.Option(2, "--groups-per-step", help="Query groups per optimiser step."),
    layers: int = typer.Option(8, "--layers", help="LoRA on the top N blocks only (0: all; fewer is faster)."),
    rank: int = typer.Option(16, "--lora-rank"),
    lr: float = typer.Option(2e-4, "--lr"),
    max_passage_tokens: int = typer.Option(160, "--max-passage-tokens"),
    template: str = typer.Option("rank1", "--template", help="Prompt template (duo: groups of `rank1 distill "
                                 "duo`, for the pairwise judge)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto: bfloat16 where the CPU has AMX/AVX512-BF16 or on CUDA, else float32."),
    save_steps: int = typer.Option(10, "--save-steps", help="Checkpoint every N steps (resume point)."),
    seed: int = typer.Option(0, "--seed"),
    init_adapter: Optional[Path] = typer.Option(None, "--init-adapter",
                                                help="Start from this adapter (same LoRA settings): a new schedule."),
    skip_groups: int = typer.Option(0, "--skip-groups", help="Skip the first N groups (those an earlier phase saw)."),
    mix: list[Path] = typer.Option([], "--mix", help="Groups JSONL taken in turn with GROUPS (repeatable), e.g. "
                                   "`rank1 distill contrast` groups beside MS MARCO ones."),
    grow: bool = typer.Option(False, "--grow", help="With --init-adapter: more blocks (--layers) than it has; "
                              "the extra adapters start fresh, so training starts at its model."),
    traces: list[Path] = typer.Option([], "--traces", help="Reasoning traces JSONL (repeatable): each step also "
                                      "trains on some, so the adapter serves reasoning mode too."),
    trace_weight: float = typer.Option(0.5, "--trace-weight", help="Weight of the trace loss beside the direct loss."),
    traces_per_step: int = typer.Option(2, "--traces-per-step", help="Trace rows per optimiser step."),
    max_trace_tokens: int = typer.Option(384, "--max-trace-tokens",
                                         help="Cut trace rows to about N tokens (the passage, never the reasoning)."),
) -> None:
    """Train the labels student: the direct-mode score on query groups (listwise + pointwise loss), LoRA;
    with --traces, its reasoning too (token cross-entropy on the traces' completions)."""

    @fail_cleanly
    def body() -> None:
        from distill.direct_train import DirectTrainConfig, train_direct
        from distill.joint import read_answered

        cfg = DirectTrainConfig(max_steps=max_steps, groups_per_step=groups_per_step, layers=layers, lora_rank=rank,
                                lora_alpha=2 * rank, learning_rate=lr, max_passage_tokens=max_passage_tokens,
                                dtype=dtype, save_steps=save_steps, seed=seed, template=template,
                                init_adapter=str(init_adapter) if init_adapter else None, grow=grow,
                                trace_weight=trace_weight, traces_per_step=traces_per_step,
                                max_trace_tokens=max_trace_tokens)
        rows = _groups_after(groups, skip_groups, mix)
        answered = read_answered(traces)
        meta = {"groups_file": str(groups), "skip_groups": skip_groups, "mix_files": [str(m) for m in mix]}
        result = train_direct(rows, model, out_path, cfg, echo=_echo, traces=answered,
                              extra_meta={**meta, "trace_files": [str(t) for t in traces]} if traces else meta)
        first, last = (result.losses[0][1], result.losses[-1][1]) if result.losses else (float("nan"),) * 2
        if result.loss_parts:
            typer.echo(f"{result.trace_rows} traces, trace loss {result.loss_parts[0][2]:.4f} -> "
                       f"{result.loss_parts[-1][2]:.4f}")
        typer.echo(f"{result.rows} groups, {result.steps} steps, loss {first:.4f} -> {last:.4f}, "
                   f"{result.pairs_per_second:.2f} pairs/s, {result.seconds:.0f}s"
                   + (f" (resumed from {result.resumed_from})" if result.resumed_from else "") + f" -> {out_path}")

    body()


@app.command()
def unseen(
    groups: Path = typer.Argument(..., help="The training groups JSONL an earlier `train-labels` run was given."),
    out_path: Path = typer.Option(..., "--out", help="Groups JSONL to write: those that run did not train on."),
    skip_groups: int = typer.Option(0, "--skip-groups", help="That run's --skip-groups."),
    steps: int = typer.Option(..., "--steps", help="Optimiser steps that run made (its --max-steps)."),
    groups_per_step: int = typer.Option(2, "--groups-per-step", help="That run's --groups-per-step."),
    seed: int = typer.Option(0, "--seed", help="That run's --seed (it seeds the data order)."),
) -> None:
    """Groups an earlier `train-labels` run did not draw (its seeded order replayed), for the next phase."""

    @fail_cleanly
    def body() -> None:
        from distill.direct_train import DirectTrainConfig, drawn_groups
        from distill.msmarco import write_groups

        rest = _groups_after(groups, skip_groups)
        drawn = set(drawn_groups(len(rest), DirectTrainConfig(max_steps=steps, groups_per_step=groups_per_step,
                                                              seed=seed)))
        left = [g for i, g in enumerate(rest) if i not in drawn]
        write_groups(out_path, left)
        typer.echo(json.dumps({"groups": skip_groups + len(rest), "skipped": skip_groups, "drawn": len(drawn),
                               "unseen": len(left)}))

    body()


@app.command("checkpoint-compact")
def checkpoint_compact(
    checkpoint: Path = typer.Argument(..., help="A `checkpoint-N` folder under a training run's OUT/checkpoints."),
    out_path: Path = typer.Option(..., "--out", help="Parent folder; writes OUT/checkpoint-N (replaces older ones)."),
) -> None:
    """Shrink a training checkpoint to commit it: the adapter in bf16, Adam's moments dropped (they restart)."""

    @fail_cleanly
    def body() -> None:
        from distill.checkpoint import compact

        typer.echo(str(compact(checkpoint, out_path)))

    body()


@app.command("checkpoint-restore")
def checkpoint_restore(
    compact_dir: Path = typer.Argument(..., help="A folder written by `rank1 distill checkpoint-compact`."),
    out_path: Path = typer.Option(..., "--out", help="The training run's --out; rerun its command to resume."),
) -> None:
    """Put a compact checkpoint back under OUT/checkpoints, so the same training command resumes from it."""

    @fail_cleanly
    def body() -> None:
        from distill.checkpoint import restore

        typer.echo(str(restore(compact_dir, out_path)))

    body()


@app.command()
def export(
    adapter: Path = typer.Argument(..., help="Adapter folder from `rank1 distill train`."),
    out_path: Path = typer.Option(..., "--out", help="Model folder to write (loadable by rank1 --model)."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Default: from the adapter's train_log.json."),
    dtype: str = typer.Option(MERGED_DTYPE, "--dtype", help=f"Dtype to merge and save in ({MERGED_DTYPE}, as rank1 "
                              "merges its students; auto: as this CPU runs models, bfloat16 where it has bf16 units)."),
    quantize_4bit: bool = typer.Option(False, "--quantize-4bit", help="Also write OUT-4bit (bitsandbytes nf4)."),
    data: str = typer.Option("", "--data", help="Training-data description for the model card."),
) -> None:
    """Merge the adapter into the base model; save safetensors, tokenizer and a model card."""

    @fail_cleanly
    def body() -> None:
        from distill.export import export as run_export

        result = run_export(adapter, out_path, base_model, dtype, quantize_4bit, data)
        typer.echo(f"{result['path']} ({result['bytes'] / 1e6:.0f} MB)"
                   + (f", 4-bit copy {result['path_4bit']}" if result["path_4bit"] else ""))

    body()


def _adapter_folder(spec: str) -> Path:
    """An adapter folder, or the folder of a shipped student named ``spec``."""
    from rank1.students import STUDENTS

    return STUDENTS[spec].folder if spec in STUDENTS else Path(spec)


@app.command()
def interpolate(
    anchor: str = typer.Argument(..., help="Adapter folder or shipped student to fall back towards (weight 0)."),
    tuned: str = typer.Argument(..., help="Adapter folder or shipped student trained further (weight 1)."),
    weight: float = typer.Option(..., "--weight", help="Share of TUNED's update (0-1; outside extrapolates)."),
    out_path: Path = typer.Option(..., "--out", help="Adapter folder to write (rank of both together)."),
) -> None:
    """Mix two LoRA adapters in weight space (WiSE-FT): (1 - w) x ANCHOR's update + w x TUNED's, exactly."""

    @fail_cleanly
    def body() -> None:
        from distill.interpolate import interpolate as run_interpolate

        info = run_interpolate(_adapter_folder(anchor), _adapter_folder(tuned), weight, out_path)
        typer.echo(json.dumps(info))

    body()


@app.command()
def package(
    adapter: Path = typer.Argument(..., help="Adapter folder from `rank1 distill train-labels` or `train`."),
    out_path: Path = typer.Option(..., "--out", help="Folder to write, e.g. rank1/data/students/NAME."),
    card: Path = typer.Option(..., "--card", help="Model card (markdown) to ship as README.md."),
    base: str = typer.Option(DEFAULT_BASE, "--base", help="Registry name of the base model (recorded in the config)."),
) -> None:
    """Ship an adapter inside rank1: bf16 weights, config, training log and card; prints the registry entry."""

    @fail_cleanly
    def body() -> None:
        from distill.export import package_adapter

        info = package_adapter(adapter, out_path, card.read_text(encoding="utf-8"), base_name=base)
        typer.echo(f'Student("{out_path.name}", base="{base}", size={info["size"]}, sha256="{info["sha256"]}")  '
                   "# add to rank1.students.STUDENTS")

    body()
