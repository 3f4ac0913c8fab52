"""Third-party output that does not concern a rank1 user, replaced by one line per step.

* transformers' per-tensor bar while a GGUF file is dequantised and its per-shard bar while a model is saved:
  a first run converts the embedded model and merges the default student's adapter once, and shows one
  status line for each (:func:`quiet_step`) instead of four raw tqdm bars;
* bitsandbytes' notice, on CPUs with AVX512-BF16, that an optional kernel package from a model hub is not
  installed: rank1 never needs it (its 4-bit CPU path works without it), and no hub is reachable offline
  (:func:`silence_bitsandbytes_notice`).

Example:
    >>> from rank1.quiet import silence_bitsandbytes_notice
    >>> silence_bitsandbytes_notice()
"""

from __future__ import annotations

import functools
import logging
import time
from contextlib import contextmanager
from typing import Iterator

_BNB_LOGGER = "bitsandbytes.backends.cpu.ops"


class _DropKernelsNotice(logging.Filter):
    """Drops bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


def silence_bitsandbytes_notice() -> None:
    """Filter bitsandbytes' optional-kernel notice (once; it is logged when bitsandbytes is first imported)."""
    logger = logging.getLogger(_BNB_LOGGER)
    if not any(isinstance(f, _DropKernelsNotice) for f in logger.filters):
        logger.addFilter(_DropKernelsNotice())


@contextmanager
def quiet_step(label: str) -> Iterator[None]:
    """Run a step with transformers' progress bars off, showing ``label`` as one status line on stderr (a
    spinner on a terminal) and ``label: done in N s`` when it ends without an error."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    silence_bitsandbytes_notice()
    console = Console(stderr=True)
    bars_on, gguf_tqdm = hf_logging.is_progress_bar_enabled(), gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)  # this bar ignores transformers' switch
    start = time.perf_counter()
    try:
        with console.status(label):
            yield
    finally:
        gguf_utils.tqdm = gguf_tqdm
        if bars_on:
            hf_logging.enable_progress_bar()
    console.print(f"{label}: done in {time.perf_counter() - start:.0f} s", highlight=False)
