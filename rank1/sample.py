"""Where the sample collection shipped with the package lies (``corpus.jsonl``, ``topics.tsv``, ``qrels.txt``).

A leaf module (it imports nothing of rank1), so that low layers such as the int8 calibration
(:mod:`rank1.backends.smooth`) can read the sample without importing the pipeline; :mod:`rank1.pipeline`
re-exports the name.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).parent / "data" / "sample"
"""The sample collection's folder."""
