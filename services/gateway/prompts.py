"""Prompts as token ids, with the model's own tokenizer (the entry node uses
the same files, so ``tok.encode(prompt)`` here is what the entry would do)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.gateway.errors import invalid


def load_tokenizer(model_dir: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _content(content: Any) -> str:
    """OpenAI message content: a string, or a list of parts of which the text ones count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            raise invalid("only text content parts are supported", "messages")
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def plain_chat(messages: Sequence[dict[str, Any]]) -> str:
    """The template for models without one: ``role: content`` lines and an
    open ``assistant:`` turn for the model to complete."""
    lines = [f"{m['role']}: {_content(m.get('content'))}" for m in messages]
    return "\n".join([*lines, "assistant:"])


def chat_prompt(tok: Any, messages: Sequence[dict[str, Any]]) -> str:
    """The chat rendered as the model expects it (its tokenizer's chat
    template), ending where the assistant's answer starts."""
    plain = [{"role": m["role"], "content": _content(m.get("content"))} for m in messages]
    if getattr(tok, "chat_template", None):
        return str(tok.apply_chat_template(plain, tokenize=False, add_generation_prompt=True))
    return plain_chat(messages)


def chat_ids(tok: Any, messages: Sequence[dict[str, Any]]) -> list[int]:
    text = chat_prompt(tok, messages)
    # A chat template writes its own special tokens; do not add a second BOS.
    templated = bool(getattr(tok, "chat_template", None))
    return list(tok.encode(text, add_special_tokens=not templated))


def completion_ids(tok: Any, prompt: str | list[str] | list[int]) -> list[int]:
    if isinstance(prompt, str):
        ids = list(tok.encode(prompt))
    elif prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) != 1:
            raise invalid("one prompt per request (n=1)", "prompt")
        ids = list(tok.encode(prompt[0]))
    else:
        ids = [int(t) for t in prompt]
        if any(t < 0 or t >= len(tok) for t in ids):
            raise invalid(f"token ids must be in [0, {len(tok)})", "prompt")
    if not ids:
        raise invalid("the prompt is empty", "prompt")
    return ids
