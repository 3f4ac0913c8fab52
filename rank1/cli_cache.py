"""``rank1 cache``: move stored judgements between machines (export on one, import on another).

A rerun on the other machine then reuses them, as it would on the first: an interrupted evaluation resumes
wherever its judgements travel (the store key holds the model fingerprint, prompt, mode, budget and engine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rank1.cli_errors import fail_cleanly

app = typer.Typer(help="The score cache: export judgements to a file, import them on another machine.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
_CACHE_HELP = "Score cache (default $RANK1_SCORE_CACHE or ~/.cache/rank1/scores.sqlite)."


def _store(cache: Optional[Path]):  # noqa: ANN202 - ScoreStore, imported lazily with the store module
    from rank1.store import ScoreStore, default_store_path

    return ScoreStore(cache or default_store_path())


@app.command("export")
@fail_cleanly
def export_cmd(
    out_path: Path = typer.Argument(..., help="JSONL file to write (gzip when it ends in .gz); written atomically."),
    cache: Optional[Path] = typer.Option(None, "--cache", help=_CACHE_HELP),
    fingerprint: list[str] = typer.Option([], "--fingerprint", help="Only this model fingerprint (a prefix will "
                                          "do; repeatable). Benchmark JSON files record it."),
    mode: list[str] = typer.Option([], "--mode", help="Only this mode: direct or reasoning (repeatable)."),
    engine: list[str] = typer.Option([], "--engine", help="Only engines whose description holds this text, e.g. "
                                     "quantize=int8-smooth or vllm (repeatable). Benchmark JSON files record it."),
) -> None:
    """Write stored judgements to a file."""
    with _store(cache) as store:
        n = store.export(out_path, fingerprint, mode, engine)
        Console(soft_wrap=True, highlight=False).print(f"wrote {out_path}: {n} of {store.count()} judgements")


@app.command("import")
@fail_cleanly
def import_cmd(
    path: Path = typer.Argument(..., help="A file `rank1 cache export` wrote."),
    cache: Optional[Path] = typer.Option(None, "--cache", help=_CACHE_HELP),
) -> None:
    """Add the judgements of an exported file to the cache (those already there are kept)."""
    with _store(cache) as store:
        read, added = store.import_file(path)
        Console(soft_wrap=True, highlight=False).print(f"{path}: {read} judgements, {added} new, {store.count()} in {store.path}")


@app.command("info")
@fail_cleanly
def info_cmd(cache: Optional[Path] = typer.Option(None, "--cache", help=_CACHE_HELP)) -> None:
    """How many judgements the cache holds, and where it is."""
    with _store(cache) as store:
        Console(soft_wrap=True, highlight=False).print(f"{store.path}: {store.count()} judgements")
