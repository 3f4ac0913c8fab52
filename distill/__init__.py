"""Distillation for rank1: teacher reasoning traces -> filtering -> LoRA fine-tuning -> an exported student.

Modules: :mod:`distill.records` (the trace schema; JSONL, Rank1's alpaca rows, ``datasets``),
:mod:`distill.sampling` (training pairs from qrels and a first-stage run), :mod:`distill.teacher` (rank1
backends and OpenAI-compatible endpoints as teachers; resumable generation), :mod:`distill.filtering`,
:mod:`distill.train` (trl + peft), :mod:`distill.export` (merged safetensors and a model card), and
:mod:`distill.cli` (``rank1 distill ...``). Importing the package imports nothing heavy.
"""
