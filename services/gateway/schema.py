"""The OpenAI request bodies the gateway accepts and the objects it returns.

Unknown fields are ignored (clients send many); fields with a meaning the
gateway cannot honour (n > 1, echo, logprobs, best_of) are refused with 400
rather than silently dropped.
"""

from __future__ import annotations

import time
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.gateway.errors import APIError, invalid

R = TypeVar("R", bound=BaseModel)


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    # edgesplit extension (also the x-edgesplit-privacy header)
    privacy: Literal["low", "high"] | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int]
    echo: Literal[False] = False
    logprobs: None = None
    best_of: int | None = Field(None, ge=1, le=1)
    suffix: None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: Literal[False] | None = None
    tools: None = None

    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def parse(kind: type[R], body: Any) -> R:
    """The request, or a 400 naming the first offending field."""
    try:
        return kind.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise invalid(f"{loc}: {first['msg']}", loc or None) from None


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


class Reply:
    """Builds one request's response objects (same id and timestamp throughout)."""

    def __init__(self, kind: Literal["completion", "chat"], request_id: str, model: str) -> None:
        self.kind, self.model = kind, model
        self.id = ("cmpl-" if kind == "completion" else "chatcmpl-") + request_id
        self.created = int(time.time())

    def _base(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def whole(self, text: str, finish: str, prompt_tokens: int, tokens: int) -> dict[str, Any]:
        if self.kind == "completion":
            choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None,
                                      "finish_reason": finish}
            out = self._base("text_completion")
        else:
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "logprobs": None, "finish_reason": finish}
            out = self._base("chat.completion")
        return {**out, "choices": [choice], "usage": usage(prompt_tokens, tokens)}

    def chunk(self, text: str, finish: str | None, first: bool = False) -> dict[str, Any]:
        if self.kind == "completion":
            return {**self._base("text_completion"), "choices": [
                {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}
        delta: dict[str, Any] = {"role": "assistant", "content": text} if first else \
            {"content": text} if text or not finish else {}
        return {**self._base("chat.completion.chunk"), "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def usage_chunk(self, prompt_tokens: int, tokens: int) -> dict[str, Any]:
        obj = "text_completion" if self.kind == "completion" else "chat.completion.chunk"
        return {**self._base(obj), "choices": [], "usage": usage(prompt_tokens, tokens)}


def model_not_found(name: str, served: str) -> APIError:
    return APIError(404, f"model {name!r} does not exist; this gateway serves {served!r}",
                    "invalid_request_error", "model_not_found", "model")
