"""The rerank request and response, in the field names of Cohere's rerank API (which vLLM, Jina, Infinity
and text-embeddings-inference clients parse too), with rank1's additions as extra fields.

Request: ``{model, query, documents: [str | {text, ...}], top_n, return_documents}`` plus Cohere's
``rank_fields`` and ``max_tokens_per_doc``, and rank1's ``return_reasoning``, ``mode`` and ``budget``.
Response: ``{id, model, results: [{index, relevance_score, document?}], usage, meta}`` where ``usage`` is
vLLM's (``prompt_tokens``, ``total_tokens``) and ``meta`` Cohere's (``billed_units.search_units``,
``tokens``, ``warnings``); every result adds ``truncated`` and ``fallback`` (and ``reasoning`` when asked
for, with ``reasoning_relevance_score``, the P(true) the reasoning reached, where the score blends it with direct
mode: the default model's reasoning explains a direct score), the response adds ``mode``, ``budget``, ``max_tokens_per_doc`` and ``cached``.
"""

from __future__ import annotations

import math
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rank1.serve.config import RequestError
from rank1.serve.engine import JobResult, JudgeSpec

IGNORED = ("max_chunks_per_doc", "priority")
"""Cohere request fields that are accepted and have no effect here."""


class RerankRequest(BaseModel):
    """A rerank request; types are strict (``"3"`` is not an integer), unknown fields are reported in
    ``meta.warnings`` and otherwise ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = None
    query: str
    documents: list[Any] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    return_reasoning: bool = False
    rank_fields: list[str] | None = Field(default=None, min_length=1)
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    mode: Literal["direct", "reasoning", "adaptive"] | None = None
    budget: int | None = Field(default=None, ge=1)
    max_chunks_per_doc: int | None = None
    priority: int | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("must not be empty")
        return query

    @classmethod
    def parse(cls, body: bytes) -> "RerankRequest":
        """Parse a JSON body.

        Raises:
            RequestError: 400 for a body that is not a JSON object, 422 naming the first bad field.
        """
        if not body.strip():
            raise RequestError(400, "body", "empty; send a JSON object")
        try:
            return cls.model_validate_json(body)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            field = ".".join(str(part) for part in first["loc"]) or "body"
            status = 400 if field == "body" else 422
            raise RequestError(status, field, first["msg"]) from None

    def texts(self, max_documents: int, max_query_chars: int) -> list[str]:
        """The text to judge of every document: a string as it is; of an object its ``text``, or with
        ``rank_fields`` those fields as ``name: value`` lines, in that order.

        Raises:
            RequestError: 422 naming the field at fault.
        """
        if len(self.query) > max_query_chars:
            raise RequestError(422, "query", f"{len(self.query)} characters; this server takes at most "
                               f"{max_query_chars}")
        if len(self.documents) > max_documents:
            raise RequestError(422, "documents", f"{len(self.documents)} documents; this server takes at most "
                               f"{max_documents} per request")
        fields = self.rank_fields or ["text"]
        texts = []
        for i, doc in enumerate(self.documents):
            if isinstance(doc, str):
                texts.append(doc)
                continue
            if not isinstance(doc, dict):
                raise RequestError(422, f"documents.{i}", f"must be a string or an object with a text field, "
                                   f"not {_json_type(doc)}")
            for name in fields:
                if name not in doc:
                    raise RequestError(422, f"documents.{i}.{name}", "missing")
                if not isinstance(doc[name], str):
                    raise RequestError(422, f"documents.{i}.{name}", f"must be a string, not {_json_type(doc[name])}")
            texts.append(doc["text"] if fields == ["text"] else "\n".join(f"{n}: {doc[n]}" for n in fields))
        return texts

    def spec(self, default: JudgeSpec) -> tuple[JudgeSpec, list[str]]:
        """The judging settings: the server's, with the request's ``mode``, ``budget`` (at most the
        server's) and ``max_tokens_per_doc`` (capped at the server's, with a warning); and the warnings.

        Raises:
            RequestError: 422 for a budget above the server's.
        """
        warnings = [f"{name}: unknown field, ignored" for name in sorted(self.model_extra or {})]
        warnings += [f"{name}: not supported, ignored" for name in IGNORED if getattr(self, name) is not None]
        if self.budget is not None and self.budget > default.budget:
            raise RequestError(422, "budget", f"{self.budget} tokens; this server allows at most {default.budget}")
        tokens = default.max_tokens
        if self.max_tokens_per_doc is not None:
            if self.max_tokens_per_doc > tokens:
                warnings.append(f"max_tokens_per_doc: {self.max_tokens_per_doc} is above this server's cap, "
                                f"{tokens} used")
            tokens = min(tokens, self.max_tokens_per_doc)
        return JudgeSpec(self.mode or default.mode, self.budget or default.budget, tokens), warnings


def rerank_response(request: RerankRequest, spec: JudgeSpec, result: JobResult, model: str,
                    warnings: list[str]) -> dict[str, Any]:
    """The JSON response: results best first (ties to the smaller index), cut to ``top_n``."""
    order = sorted(range(len(result.judgements)), key=lambda i: (-result.judgements[i].score, i))
    results = []
    for i in order[: request.top_n]:
        judgement = result.judgements[i]
        item: dict[str, Any] = {"index": i, "relevance_score": judgement.score}
        if request.return_documents:
            doc = request.documents[i]
            item["document"] = {"text": doc} if isinstance(doc, str) else doc
        item["truncated"], item["fallback"] = judgement.truncated, judgement.fallback
        if request.return_reasoning:
            item["reasoning"] = judgement.reasoning
            item["generated_tokens"] = judgement.generated_tokens
            if judgement.reasoned_score is not None:  # the score blends the reasoning's verdict with direct mode
                item["reasoning_relevance_score"] = judgement.reasoned_score
        results.append(item)
    output = sum(j.generated_tokens for j in result.judgements)
    meta: dict[str, Any] = {
        "api_version": {"version": "1"},
        "billed_units": {"search_units": math.ceil(len(result.judgements) / 100)},
        "tokens": {"input_tokens": result.prompt_tokens, "output_tokens": output},
    }
    if warnings:
        meta["warnings"] = warnings
    return {
        "id": uuid.uuid4().hex, "model": model, "results": results,
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": output,
                  "total_tokens": result.prompt_tokens + output},
        "meta": meta, "mode": spec.mode, "budget": 0 if spec.mode == "direct" else spec.budget,
        "max_tokens_per_doc": spec.max_tokens, "cached": result.cached,
    }


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type."""
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object",
             type(None): "null", str: "a string"}
    return names.get(type(value), type(value).__name__)

