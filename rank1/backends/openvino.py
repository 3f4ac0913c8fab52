"""The OpenVINO backend: weight-only int8 or int4 compressed weights on the CPU (NNCF).

OpenVINO with NNCF (``pip install 'rank1[openvino]'``) runs an exported copy of the model whose weights NNCF
compressed to int8 (asymmetric, per output channel) or int4 (asymmetric, per group of 128 inputs, smaller where a
layer's width needs it; embeddings and output layer int8), as optimum-intel's ``OVWeightQuantizationConfig``
does. OpenVINO's CPU plugin quantizes activations to int8 in groups of 32 inside the compressed matrix products
where the CPU has int8 dot products (``activation_group=0`` keeps them exact: weight-only compression); the rest
computes in float32, or in bfloat16 with ``dtype="bfloat16"``. optimum-intel itself is not used (its releases want
transformers < 5.6; 2.2.0 fails to import on 5.19): the model is traced with OpenVINO's converter and compressed
by ``nncf.compress_weights``.

The exported graph is stateful, as optimum-intel makes it: it takes ``input_ids``, a 2D ``attention_mask`` over
past and new tokens, ``position_ids`` and ``beam_idx`` (which cached rows the new tokens continue), keeps every
layer's key/value cache inside the inference request, and returns the last position's logits. The cache is held
in the compute precision (float32 or bfloat16; OpenVINO's default would quantize it to u8). It is made once per
model and weight format (:func:`exported`) and cached beside the model in the model cache.

Direct mode reads P(true) after each prompt in length-bucketed, left-padded batches, like the transformers
backend without shared heads. Reasoning mode decodes a length-bucketed batch greedily on the cache, each row
leaving once its reasoning block closes (or its budget is spent, or it ends), and reads the answer after
:func:`~rank1.backends.base.answer_sequence`, exactly as the other backends do.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from rank1.backends.base import BaseBackend, JudgeSettings, Prompt, ProgressCallback, answer_sequence, length_buckets
from rank1.backends.options import EngineOptions
from rank1.loading import ModelError, read_pretrained, read_tokenizer
from rank1.models import ModelRef, copies_root, ensure_cached
from rank1.scoring import Judgement, p_true

WEIGHT_FORMATS = ("int8", "int4", "fp32")
"""The values of the ``weight_format`` option."""

EXPORT_REVISION = 2
"""Revision of the exported graph's inputs and outputs, part of the cached copy's name."""

INT4_GROUP = 128
"""int4 weights get one scale per this many inputs (optimum-intel's default)."""


ACTIVATION_GROUP = 32
"""OpenVINO's CPU default for ``DYNAMIC_QUANTIZATION_GROUP_SIZE``: inside a compressed matrix product the
activations are quantized to int8 in groups of this many (the default of ``activation_group``)."""

PRECISION_HINTS = {"float32": "f32", "bfloat16": "bf16"}
"""OpenVINO's ``INFERENCE_PRECISION_HINT`` (and key/value cache precision) for each ``dtype``."""


@dataclass(frozen=True)
class OpenVINOOptions(EngineOptions):
    """The options of the OpenVINO backend.

    Attributes:
        dtype: ``"auto"`` (float32), ``"float32"`` or ``"bfloat16"``: the precision OpenVINO computes the
            activations and holds the key/value cache in (its ``INFERENCE_PRECISION_HINT``).
        weight_format: ``"int8"`` (the default), ``"int4"``, or ``"fp32"`` (uncompressed, to check the engine
            against the exact path).
        activation_group: The group size of OpenVINO's dynamic int8 quantization of the activations inside
            compressed matrix products (its ``DYNAMIC_QUANTIZATION_GROUP_SIZE``; 32, OpenVINO's CPU default), or 0
            to keep the activations exact (float32 or bfloat16, as ``dtype`` says) with only the weights compressed.
        threads: Threads per inference (0: OpenVINO's default, every core); only speed, so not part of
            score-store keys.
    """

    weight_format: str = "int8"
    activation_group: int = ACTIVATION_GROUP

    ENGINE: ClassVar[str] = "openvino"
    DTYPES: ClassVar[tuple[str, ...]] = tuple(PRECISION_HINTS)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight_format not in WEIGHT_FORMATS:
            raise ValueError(f"weight_format must be {', '.join(WEIGHT_FORMATS)}, not {self.weight_format!r}")
        if not isinstance(self.activation_group, int) or self.activation_group < 0:
            raise ValueError(f"activation_group must be 0 (exact activations) or a group size, "
                             f"not {self.activation_group!r}")

    def key_items(self) -> dict[str, Any]:
        """As :meth:`BackendOptions.key_items`, with ``activation_group`` left out at OpenVINO's default (the
        judgements stored before the option existed were made so, and keep their keys)."""
        items = super().key_items()
        if self.activation_group == ACTIVATION_GROUP:
            del items["activation_group"]
        return items


def _require() -> None:
    """Raise a one-line :class:`ModelError` naming the extra when OpenVINO or NNCF is missing."""
    if any(importlib.util.find_spec(m) is None for m in ("openvino", "nncf")):
        raise ModelError("the openvino backend needs openvino and nncf: pip install 'rank1[openvino]'")


def _step_module(model: Any) -> Any:
    """``model`` wrapped as one cached step: (ids, 2D mask, positions, *past) -> (last logits, *present).

    The 4D additive mask (causal over past and new tokens, padding masked) is built here from plain tensor
    operations, which transformers uses as given, so the traced graph does not depend on its mask code.
    """
    import torch
    from transformers.cache_utils import DynamicCache

    class Step(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any) -> tuple[Any, ...]:
            new, total = input_ids.shape[1], attention_mask.shape[1]
            query = torch.arange(new).view(1, new, 1) + (total - new)
            allowed = (torch.arange(total).view(1, 1, total) <= query) & attention_mask.bool()[:, None, :]
            mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)[:, None]
            cache = DynamicCache(config=self.model.config)
            for i, layer in enumerate(cache.layers):
                layer.dtype, layer.device = past[0].dtype, past[0].device
                layer.keys, layer.values, layer.is_initialized = past[2 * i], past[2 * i + 1], True
            out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            return (out.logits[:, -1, :], *(t for layer in out.past_key_values.layers for t in (layer.keys,
                                                                                            layer.values)))

    return Step()


def _make_stateful(graph: Any) -> None:
    """Move the key/value cache of ``graph`` (inputs ``past.*``, outputs ``present.*``) into the inference
    request, as optimum-intel's stateful export does: a ``beam_idx`` input selects the cached rows each call
    continues (a gather on every cache input), the cache inputs and outputs become state variables, and each
    variable starts empty (``[rows of input_ids, heads, 0, dim]``) after ``reset_state``."""
    import numpy as np
    import openvino as ov
    from openvino import opset13
    from openvino._offline_transformations import apply_make_stateful_transformation

    past = [port.get_any_name() for port in graph.inputs[3:]]
    present = [port.get_any_name() for port in graph.outputs[1:]]
    beam = opset13.parameter(name="beam_idx", dtype=ov.Type.i32, shape=ov.PartialShape([-1]))
    beam.output(0).get_tensor().set_names({"beam_idx"})
    graph.add_parameters([beam])
    for name in past:
        port = graph.input(name)
        consumers = port.get_target_inputs()
        chosen = opset13.gather(port, beam, opset13.constant(0))
        for consumer in consumers:
            consumer.replace_source_output(chosen.output(0))
    graph.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(graph, dict(zip(past, present)))
    rows = opset13.gather(opset13.shape_of(graph.input("input_ids"), output_type="i64"), opset13.constant([0]),
                          opset13.constant(0))
    for op in graph.get_ops():
        if op.get_type_name() == "ReadValue":  # the empty cache: [rows, heads, 0, dim]
            dims = [rows, *(opset13.constant(np.array([d.get_length() if d.is_static else 0], dtype=np.int64))
                            for d in list(op.get_output_partial_shape(0))[1:])]
            zero = opset13.constant(0.0, dtype=op.get_output_element_type(0))
            op.set_arguments([opset13.broadcast(zero, opset13.concat(dims, axis=0))])
    graph.validate_nodes_and_infer_types()


def _export(model: ModelRef, weight_format: str, trust_remote_code: bool, out: Path) -> None:
    """Trace ``model`` as one cached step (:func:`_step_module`), compress its weights, keep its cache inside
    (:func:`_make_stateful`) and save it in ``out``."""
    import logging
    import warnings

    import nncf
    import openvino as ov
    import torch
    from transformers.cache_utils import DynamicCache
    from transformers.utils import logging as hf_logging

    nncf.set_log_level(logging.WARNING)  # its bit-width table is noise here

    torch_model, _ = read_pretrained(model.path, model.name, trust_remote_code, dtype=torch.float32)
    if any(layer.is_sliding for layer in DynamicCache(config=torch_model.config).layers):
        raise ModelError(f"{model.name!r} has sliding-window attention, which the openvino backend does not export")
    config = torch_model.config.get_text_config(decoder=True)
    layers, heads = config.num_hidden_layers, config.num_key_value_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    batch, new, old = 2, 3, 2  # example shapes for tracing; every dimension but heads and dim stays dynamic
    example = (torch.ones(batch, new, dtype=torch.long), torch.ones(batch, old + new, dtype=torch.long),
               torch.arange(old, old + new).repeat(batch, 1), *(torch.zeros(batch, heads, old, dim)
                                                                for _ in range(2 * layers)))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # tracing touches the loss function, whose lookup warns on converted GGUFs
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on Python booleans in code paths not taken
            graph = ov.convert_model(_step_module(torch_model.eval()), example_input=example)
    finally:
        hf_logging.set_verbosity(verbosity)
    del torch_model
    cache = [f"{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    for port, name in zip(graph.inputs, ["input_ids", "attention_mask", "position_ids", *(f"past.{c}" for c in cache)]):
        port.get_tensor().set_names({name})
    graph.reshape({f"past.{c}": ov.PartialShape([-1, heads, -1, dim]) for c in cache})  # as traced: rows, length
    for port, name in zip(graph.outputs, ["logits", *(f"present.{c}" for c in cache)]):
        port.get_tensor().set_names({name})
    if weight_format == "int8":
        graph = nncf.compress_weights(graph, mode=nncf.CompressWeightsMode.INT8_ASYM)
    elif weight_format == "int4":
        adjust = nncf.AdvancedCompressionParameters(group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST)
        graph = nncf.compress_weights(graph, mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=INT4_GROUP,
                                      ratio=1.0, advanced_parameters=adjust)
    _make_stateful(graph)
    ov.save_model(graph, out / "openvino_model.xml", compress_to_fp16=False)
    shutil.copy(Path(model.path) / "config.json", out / "config.json")


def exported(model: ModelRef, weight_format: str, trust_remote_code: bool = False) -> Path:
    """The OpenVINO copy of ``model`` with ``weight_format`` weights, exported on first use.

    The copy is ``<name>.ov<revision>-<weight_format>`` beside the model in its cache (for a user's own folder or
    a hub id: in the model cache root) and is made again when the model's fingerprint changes; it is built in a
    temporary folder and renamed into place (:func:`rank1.models.ensure_cached`), so an interrupted export
    leaves nothing half-written.

    Raises:
        ModelError: openvino or nncf is not installed, or the model cannot be exported.
    """
    _require()
    name = f"{model.name.replace('/', '--')}.ov{EXPORT_REVISION}-{weight_format}"

    def build(tmp: Path) -> None:
        from rank1.quiet import quiet_step

        with quiet_step(f"Exporting {model.name} for OpenVINO ({weight_format} weights, once)"):
            _export(model, weight_format, trust_remote_code, tmp)

    try:
        return ensure_cached(name, copies_root(model), model.fingerprint, f"openvino:{model.name}", build,
                             dtype=weight_format, weights="openvino_model.bin")
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelError(f"cannot export {model.name!r} ({model.path}) for OpenVINO: {err}") from err


class OpenVINOBackend(BaseBackend):
    """Judges prompts with an OpenVINO inference request over an exported copy of the model.

    Args:
        model: The resolved model (a local Hugging Face folder: an embedded model, a student, a path).
        **options: The fields of :class:`OpenVINOOptions`.

    Raises:
        ValueError: An option the backend does not take, or a bad value.
        rank1.models.ModelError: openvino or nncf is missing, or the model cannot be exported or loaded.
    """

    name = "openvino"
    options_class = OpenVINOOptions

    def __init__(self, model: ModelRef, **options: Any) -> None:
        self.options = o = OpenVINOOptions.parse(options)
        path = exported(model, o.weight_format, o.trust_remote_code)
        import openvino as ov

        hint = PRECISION_HINTS[o.resolved_dtype()]
        config = {"INFERENCE_PRECISION_HINT": hint, "KV_CACHE_PRECISION": hint,
                  "DYNAMIC_QUANTIZATION_GROUP_SIZE": o.activation_group,
                  **({"INFERENCE_NUM_THREADS": o.threads} if o.threads else {})}
        try:
            self.compiled = ov.Core().compile_model(str(path / "openvino_model.xml"), "CPU", config)
            tokenizer = read_tokenizer(model.path, o.trust_remote_code)
        except (OSError, ValueError, RuntimeError) as err:
            raise ModelError(f"cannot load {model.name!r} with OpenVINO from {path}: {err}") from err
        self.request = self.compiled.create_infer_request()
        super().__init__(tokenizer, model.fingerprint)

    def close(self) -> None:
        """Free the engine's weights."""
        self.request = self.compiled = None

    def _padded(self, rows: Sequence[list[int]]) -> tuple[Any, Any, Any]:
        """Left-padded (ids, mask, positions) arrays of ``rows``; the request's cache emptied for them."""
        import numpy as np

        width = max(len(x) for x in rows)
        self.tokens.count(rows, width)
        ids = np.array([[self.tokenizer.pad_token_id] * (width - len(x)) + x for x in rows], dtype=np.int64)
        mask = np.array([[0] * (width - len(x)) + [1] * len(x) for x in rows], dtype=np.int64)
        self.request.reset_state()
        return ids, mask, np.clip(mask.cumsum(-1) - 1, 0, None)

    def _step(self, ids: Any, mask: Any, positions: Any, rows: Sequence[int] | None = None) -> Any:
        """One inference: the last position's logits ``[rows, vocab]``; the new tokens continue the cached
        ``rows`` (default: every row, in order), and the cache keeps only those."""
        import numpy as np

        beam = np.arange(len(ids), dtype=np.int32) if rows is None else np.asarray(rows, dtype=np.int32)
        out = self.request.infer({"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                                  "beam_idx": beam})
        return out[0]

    def answer_scores(self, ids: Sequence[list[int]], settings: JudgeSettings) -> list[float]:
        """P(true) read after each token list, in length-bucketed, left-padded batches of ``settings.batch_size``."""
        true, false = self.answer_tokens(settings)
        scores = [0.0] * len(ids)
        for batch in length_buckets([len(x) for x in ids], settings.batch_size):
            logits = self._step(*self._padded([ids[i] for i in batch]))
            for i, row in zip(batch, logits):
                scores[i] = p_true(float(row[true]), float(row[false]))
        return scores

    def _reason(
        self, prompts: Sequence[Prompt], settings: JudgeSettings, on_batch: ProgressCallback | None
    ) -> list[Judgement]:
        """Reasoning mode: greedy decoding of each length-bucketed batch (:meth:`_generate`), then the answers
        after :func:`~rank1.backends.base.answer_sequence`, read in one batch (:meth:`answer_scores`)."""
        ids, _ = self.encode([p.text for p in prompts], settings)
        results: list[Judgement | None] = [None] * len(prompts)
        for batch in length_buckets([len(x) for x in ids], settings.batch_size):
            generated = self._generate([ids[i] for i in batch], settings)
            answers = [answer_sequence(self.tokenizer, gen, settings) for gen in generated]
            scores = self.answer_scores([ids[i] + seq for i, (seq, _, _) in zip(batch, answers)], settings)
            for i, gen, (_, text, fallback), score in zip(batch, generated, answers, scores):
                results[i] = Judgement(score, text, len(gen), prompts[i].truncated, fallback)
            if on_batch:
                on_batch(len(batch), sum(map(len, generated)))
        return [r for r in results if r is not None]

    def _generate(self, ids: list[list[int]], settings: JudgeSettings) -> list[list[int]]:
        """Greedy continuations of ``ids``, at most ``settings.budget`` tokens each (end tokens left out); a row
        leaves the batch (and its cache rows are dropped) at the step where the closing tag appears in its
        decoded tail, as in the transformers backend's loop."""
        import numpy as np

        generated: list[list[int]] = [[] for _ in ids]
        active = list(range(len(ids)))  # row r of the arrays is sequence active[r]
        tokens, mask, positions = self._padded(ids)
        cached: list[int] | None = None  # the cache rows the next tokens continue (None: all of the prompt's)
        while active:
            logits = self._step(tokens, mask, positions, cached)
            keep: list[int] = []
            for row, seq in enumerate(active):
                token = int(logits[row].argmax())
                if token in self.end_tokens:
                    continue
                generated[seq].append(token)
                if len(generated[seq]) < settings.budget and not settings.closes(self.tokenizer, generated[seq]):
                    keep.append(row)
            if not keep:
                break
            cached, mask, positions = keep, mask[keep], positions[keep]
            tokens = np.array([[generated[active[r]][-1]] for r in keep], dtype=np.int64)
            active = [active[r] for r in keep]
            mask = np.concatenate([mask, np.ones((len(keep), 1), dtype=np.int64)], axis=1)
            positions = positions[:, -1:] + 1
        return generated
