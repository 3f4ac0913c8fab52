"""``rank1 distill`` commands that build training data: label groups (``prepare``), contrast groups
(``contrast``) and their template traces (``contrast-traces``), traces from GPT-3.5 rationales
(``rationales``), and groups for the pairwise judge (``duo``). Plain functions with typer options, registered
on the ``distill`` app by :mod:`distill.cli` (:data:`COMMANDS`); heavy libraries are imported inside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import typer

from rank1.cli_errors import fail_cleanly


def prepare(
    data: Path = typer.Option(..., "--data", help="Folder with the MS MARCO files (shared/data/msmarco_train)."),
    out_path: Path = typer.Option(..., "--out", help="Training groups JSONL to write."),
    dev_out: Optional[Path] = typer.Option(None, "--dev-out", help="Also write the held-out dev split's rows here."),
    negatives: int = typer.Option(3, "--negatives", help="Hard negatives per group (beside one positive)."),
    dev_queries: int = typer.Option(100, "--dev-queries", help="Dev-file queries held out for model selection."),
    sources: str = typer.Option("dev-bm25,windows,positives-mined", "--sources",
                                help="Comma-separated: dev-bm25, windows, positives-mined (interleaved in this order)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and of every draw."),
) -> None:
    """Training groups (a positive and hard negatives per query) from MS MARCO, with a held-out dev split."""

    @fail_cleanly
    def body() -> None:
        from distill.msmarco import PrepareConfig, prepare as run_prepare, write_groups

        cfg = PrepareConfig(negatives=negatives, dev_queries=dev_queries, sources=tuple(sources.split(",")), seed=seed)
        prepared = run_prepare(data, cfg)
        write_groups(out_path, prepared.groups)
        if dev_out is not None:
            from rank1.io.atomic import atomic_write

            with atomic_write(dev_out) as fh:
                for row in prepared.dev_rows:
                    fh.write(json.dumps(row._asdict(), ensure_ascii=False) + "\n")
        typer.echo(json.dumps(prepared.summary()))

    body()


def contrast(
    data: Path = typer.Option(..., "--data", help="The shared data folder (msmarco_train/, condaqa/, nevir/)."),
    out_path: Path = typer.Option(..., "--out", help="Training groups JSONL to write (train-labels reads it)."),
    dev_out: Path = typer.Option(..., "--dev-out", help="Held-out groups JSONL (and the NevIR train pairs)."),
    rules: str = typer.Option("negate-answer,exclude,condaqa-flip,statement", "--rules",
                              help="Comma-separated: negate-answer, exclude, condaqa-flip, statement "
                                   "(interleaved so)."),
    negatives: int = typer.Option(2, "--negatives", help="Ordinary hard negatives per MS MARCO group."),
    dev_fraction: float = typer.Option(0.1, "--dev-fraction", help="Share of queries / CondaQA passages held out."),
    condaqa_dev_fraction: Optional[float] = typer.Option(
        None, "--condaqa-dev-fraction", help="Share of CondaQA passages held out instead (default: --dev-fraction)."),
    max_per_rule: Optional[int] = typer.Option(None, "--max-per-rule", help="At most N training groups a source."),
    examples: int = typer.Option(0, "--examples", help="Also print N random training groups, readable."),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out draw, templates and negatives."),
) -> None:
    """Contrastive groups teaching negation and exclusion (rule-built near-copies and traps), with a dev set."""

    @fail_cleanly
    def body() -> None:
        from distill.contrast import ContrastConfig, build_contrast, examples_text
        from distill.msmarco import write_groups

        cfg = ContrastConfig(rules=tuple(rules.split(",")), negatives=negatives, dev_fraction=dev_fraction,
                             condaqa_dev_fraction=condaqa_dev_fraction, max_per_rule=max_per_rule, seed=seed)
        made = build_contrast(data, cfg)
        write_groups(out_path, made.train)
        write_groups(dev_out, made.dev)
        for source, n in made.counts.items():
            typer.echo(f"{source:17} train {n['train']:5}  dev {n['dev']:4}")
        typer.echo(f"{'total':17} train {len(made.train):5}  dev {len(made.dev):4}  -> {out_path}, {dev_out}")
        if examples:
            typer.echo("\n" + examples_text(made.train, examples, seed))

    body()


def contrast_traces(
    groups: Path = typer.Argument(..., help="Groups JSONL from `rank1 distill contrast` (--out or --dev-out)."),
    out_path: Path = typer.Option(..., "--out", help="Traces JSONL to write (`rank1 distill train` reads it)."),
    per_group: int = typer.Option(1, "--per-group", help="Ordinary negatives per group beside the contrast ones."),
    examples: int = typer.Option(0, "--examples", help="Also print N random traces, readable."),
    seed: int = typer.Option(0, "--seed", help="Seed of the wording variants and of the negatives drawn."),
) -> None:
    """Reasoning traces for contrast groups, by template: each names the negation or exclusion it turns on."""

    @fail_cleanly
    def body() -> None:
        from distill.contrast_traces import contrast_traces as make, counts_text, examples_text
        from distill.msmarco import read_groups
        from distill.records import write_traces

        if per_group < 0:
            raise ValueError("--per-group must be >= 0")
        made = make(read_groups(groups), per_group, seed)
        write_traces(out_path, made.traces)
        typer.echo(counts_text(made) + f"  -> {out_path}")
        if examples:
            typer.echo("\n" + examples_text(made.traces, examples, seed))

    body()


def rationales(
    data: Path = typer.Option(..., "--data", help="Folder with the MS MARCO files (shared/data/msmarco_train)."),
    out_path: Path = typer.Option(..., "--out", help="Traces JSONL to write."),
    negatives: int = typer.Option(3, "--negatives", help="Negatives kept per kept positive (same query)."),
    keep_top: int = typer.Option(2, "--keep-top", help="Keep a positive GPT-3.5 ranked this high or higher."),
    negative_from: int = typer.Option(4, "--negative-from", help="Unlabelled passages ranked this low or lower are negatives."),
    dev_queries: int = typer.Option(100, "--dev-queries", help="Dev-file queries held out (as `prepare`)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Reasoning traces from GPT-3.5's listwise rationales: cut to one passage, answer from the MS MARCO label."""

    @fail_cleanly
    def body() -> None:
        from distill.rationales import RationaleConfig, rationale_traces
        from distill.records import write_traces

        cfg = RationaleConfig(negatives=negatives, keep_top=keep_top, negative_from=negative_from,
                              dev_queries=dev_queries, seed=seed)
        made = rationale_traces(data, cfg)
        write_traces(out_path, made.traces)
        typer.echo(json.dumps(made.summary()))

    body()


def duo(
    groups: list[Path] = typer.Argument(..., help="Groups JSONL files (`rank1 distill prepare` or `contrast`)."),
    out_path: Path = typer.Option(..., "--out", help="Duo groups JSONL to write (`train-labels --template duo`)."),
    negatives: int = typer.Option(1, "--negatives", help="Negatives of each group (from the first: a contrast "
                                  "group's near-copy or trap) each paired with its positive."),
) -> None:
    """Groups for the duo judge: each positive beside a negative as Passage A / B, in both orders (rank1.duo)."""

    @fail_cleanly
    def body() -> None:
        from distill.duo import duo_groups
        from distill.msmarco import read_groups, write_groups

        n = write_groups(out_path, duo_groups((g for f in groups for g in read_groups(f)), negatives))
        typer.echo(f"{n} duo groups -> {out_path}")

    body()


COMMANDS: dict[str, Callable[..., None]] = {
    "prepare": prepare, "contrast": contrast, "contrast-traces": contrast_traces, "rationales": rationales,
    "duo": duo}
"""The commands by name, in the order ``rank1 distill --help`` lists them."""
