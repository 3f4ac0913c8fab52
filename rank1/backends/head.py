"""Answer logits in float32 from a model that runs in a lower precision (bfloat16, float16).

In bfloat16 the output layer's logits are rounded: a logit near 16 moves in steps of 0.0625, so P(true) takes
few distinct values and candidates of one query tie (measured on an AVX512-BF16 CPU with the default model:
1,041 distinct scores over 4,071 judgements, 93 of 212 queries with ties). What the score is read from is
therefore computed again in float32, at the answer position only: the final norm's input there (captured by a
forward hook), the norm applied to it in float32, and the two answer rows of the output layer in float32.
That is two dot products per pair on top of the model's own work, and it leaves the rest of the model (and
greedy decoding, which reads the full low-precision logits) as it was.

The same path serves ``quantize="int8-mixed"``, whose output layer is int8 (it is read at every generated token,
so its bytes set much of the reasoning speed) but keeps its float32 weight for the answer rows.

A float32 model needs none of this: :class:`Float32Answers` is then inactive and the answer logits are read
from the model's own output, as before.
"""

from __future__ import annotations

from typing import Any


def final_norm(model: Any) -> Any | None:
    """The model's final norm before the output layer (``model.model.norm`` in Qwen2, Llama, SmolLM2, ...), or
    ``None`` where the architecture has none by that name."""
    body = getattr(model, "model", None)
    return getattr(body, "norm", None) if body is not None else None


def _float_rows(head: Any) -> tuple[Any, Any]:
    """``(weight, bias)`` to read the answers from in float32, or ``(None, None)`` where the model's own logits
    are as good: the float32 weight an int8 output layer kept
    (:func:`~rank1.backends.int8.int8_linear`), or a plain linear layer's weight in a lower precision."""
    import torch

    if isinstance(getattr(head, "float_weight", None), torch.Tensor):
        return head.float_weight, getattr(head, "float_bias", None)
    weight = getattr(head, "weight", None)
    if (isinstance(head, torch.nn.Linear) and isinstance(weight, torch.Tensor) and weight.is_floating_point()
            and weight.dtype != torch.float32):
        return weight, head.bias
    return None, None


class Float32Answers:
    """Recomputes the two answer logits of each row in float32 (module docstring).

    While active, a forward hook on the final norm keeps the norm's input at the last position of the latest
    forward pass; :meth:`logits` turns it into float32 logits of the answer ids. :meth:`close` removes the hook.

    Args:
        model: A causal LM (``get_output_embeddings()``, a final norm at ``model.model.norm``).

    Attributes:
        active: Whether the float32 path is used: the model has a final norm and either computes in a lower
            precision with a plain linear output layer, or has an int8 output layer that kept its float32
            weight (``quantize="int8-mixed"``).
    """

    def __init__(self, model: Any) -> None:
        self.norm = final_norm(model)
        self.head = model.get_output_embeddings()
        self._weight, self._bias = _float_rows(self.head)
        self.active = self.norm is not None and self._weight is not None
        self._rows: dict[tuple[int, ...], Any] = {}
        self._last: Any = None
        self._hook = self.norm.register_forward_hook(self._capture) if self.active else None

    def close(self) -> None:
        """Remove the hook (the model is left as it was loaded)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _capture(self, module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        self._last = inputs[0][:, -1, :]

    def _answer_rows(self, ids: tuple[int, ...]) -> tuple[Any, Any]:
        """The output layer's rows (and bias) of ``ids`` in float32, computed once per pair of ids."""
        rows = self._rows.get(ids)
        if rows is None:
            index, bias = list(ids), self._bias
            rows = self._rows[ids] = (self._weight[index].float(), bias[index].float() if bias is not None else None)
        return rows

    def logits(self, ids: tuple[int, ...], model_logits: Any) -> Any:
        """``[rows, len(ids)]`` float32 logits of ``ids`` at the last position of the forward pass just run.

        Args:
            ids: Token ids (the true and false answers).
            model_logits: The model's own last-position logits ``[rows, vocab]``; used (as float32) when the
                float32 path is inactive or captured nothing.
        """
        import torch

        if not self.active or self._last is None or self._last.shape[0] != model_logits.shape[0]:
            return model_logits[:, list(ids)].float()
        hidden = self.norm.forward(self._last.float())  # forward(): not through the hook
        if hidden.dtype != torch.float32:  # a norm that casts back to its weights' dtype: not exact
            return model_logits[:, list(ids)].float()
        weight, bias = self._answer_rows(ids)
        out = hidden @ weight.T
        return out + bias if bias is not None else out
