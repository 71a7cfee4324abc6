"""The gateway's pure parts: stop strings, API keys and quotas, prompts,
status mapping, request validation."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.gateway.auth import KeyBook
from services.gateway.engine import StopText
from services.gateway.errors import APIError, from_grpc
from services.gateway.prompts import chat_ids, chat_prompt, completion_ids, plain_chat
from services.gateway.schema import ChatRequest, CompletionRequest, Reply, parse


# ---- stop strings ----------------------------------------------------------------------
def feed_all(stops: tuple[str, ...], deltas: list[str]) -> tuple[str, bool]:
    st, out = StopText(stops), ""
    for d in deltas:
        text, hit = st.feed(d)
        out += text
        if hit:
            return out, True
    return out + st.rest(), False


def test_stop_string_split_across_tokens_is_cut_and_never_leaks() -> None:
    st = StopText(("END",))
    assert st.feed("abc E") == ("abc ", False)  # "E" may start "END": held back
    assert st.feed("N") == ("", False)
    assert st.feed("Dxyz") == ("", True)
    assert feed_all(("\n\n",), ["one\n", "\ntwo"]) == ("one", True)


def test_held_back_text_comes_out_when_it_is_no_stop() -> None:
    assert feed_all(("END",), ["a E", "nd", "!"]) == ("a End!", False)
    assert feed_all(("END",), ["a E"]) == ("a E", False)  # finished: the tail is released
    assert feed_all((), ["x", "y"]) == ("xy", False)


def test_earliest_of_several_stops_wins() -> None:
    assert feed_all(("zz", "b"), ["aab", "zz"]) == ("aa", True)


# ---- keys and quotas --------------------------------------------------------------------
def book(tmp_path: Path, text: str) -> KeyBook:
    (tmp_path / "keys.yaml").write_text(text)
    return KeyBook.load(str(tmp_path / "keys.yaml"), default_max_concurrent=3)


def test_keys_map_to_clients_and_digests_work(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"sk-b").hexdigest()
    kb = book(tmp_path, "clients:\n  - {client: a, key: sk-a, max_concurrent: 1}\n"
                        f"  - {{client: b, key_sha256: {digest}, entries: [node-2]}}\n")
    a, b = kb.authenticate("Bearer sk-a"), kb.authenticate("bearer  sk-b ")
    assert (a.name, a.max_concurrent, a.may_use("node-9")) == ("a", 1, True)
    assert (b.name, b.max_concurrent) == ("b", 3)
    assert b.may_use("node-2") and not b.may_use("node-0")
    c = book(tmp_path, "clients:\n  - {client: c, key: k, trusted_only: true}\n"
             ).authenticate("Bearer k")
    assert c.may_use("node-0", trusted=True) and not c.may_use("node-0", trusted=False)


@pytest.mark.parametrize(("header", "code"), [(None, "missing_api_key"), ("sk-a", "missing_api_key"),
                                              ("Bearer ", "missing_api_key"),
                                              ("Bearer sk-x", "invalid_api_key")])
def test_missing_or_wrong_key_is_401(tmp_path: Path, header: str | None, code: str) -> None:
    kb = book(tmp_path, "clients:\n  - {client: a, key: sk-a}\n")
    with pytest.raises(APIError) as exc:
        kb.authenticate(header)
    assert exc.value.status == 401 and exc.value.code == code


def test_quota_is_per_client_and_slots_come_back(tmp_path: Path) -> None:
    kb = book(tmp_path, "clients:\n  - {client: a, key: sk-a, max_concurrent: 2}\n"
                        "  - {client: b, key: sk-b, max_concurrent: 1}\n")
    a, b = kb.authenticate("Bearer sk-a"), kb.authenticate("Bearer sk-b")
    kb.acquire(a, 2)
    kb.acquire(a, 2)
    kb.acquire(b, 2)  # another client's quota is its own
    with pytest.raises(APIError) as exc:
        kb.acquire(a, 2)
    assert exc.value.status == 429 and exc.value.headers == {"Retry-After": "2"}
    kb.release(a)
    kb.acquire(a, 2)
    assert kb.in_flight("a") == 2


def test_no_key_file_means_one_anonymous_client() -> None:
    kb = KeyBook.load("", 5)
    assert kb.authenticate(None).name == "anonymous"


@pytest.mark.parametrize("text", ["clients: {a: 1}", "clients:\n  - {key: k}\n",
                                  "clients:\n  - {client: a}\n"])
def test_bad_key_files_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises((TypeError, ValueError)):
        book(tmp_path, text)


# ---- status mapping ---------------------------------------------------------------------
@pytest.mark.parametrize(("code", "status"), [
    (grpc.StatusCode.INVALID_ARGUMENT, 400), (grpc.StatusCode.FAILED_PRECONDITION, 400),
    (grpc.StatusCode.UNAUTHENTICATED, 401), (grpc.StatusCode.PERMISSION_DENIED, 403),
    (grpc.StatusCode.NOT_FOUND, 404), (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (grpc.StatusCode.UNAVAILABLE, 503), (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (grpc.StatusCode.INTERNAL, 500)])
def test_grpc_codes_map_to_http(code: grpc.StatusCode, status: int) -> None:
    err = from_grpc(code, "why", retry_after_s=3)
    assert err.status == status
    assert err.body() == {"error": {"message": "why", "type": err.type, "param": None,
                                    "code": code.name.lower()}}
    assert ("Retry-After" in err.headers) == (status in (429, 503))


# ---- prompts ----------------------------------------------------------------------------
class WordTok:
    """A stand-in tokenizer with a chat template, to check the template path."""

    chat_template = "{% for m in messages %}<{{m.role}}>{{m.content}}{% endfor %}<assistant>"

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def apply_chat_template(self, messages: list[dict[str, Any]], tokenize: bool,
                            add_generation_prompt: bool) -> str:
        assert not tokenize and add_generation_prompt
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        self.seen.append((text, add_special_tokens))
        return [len(w) for w in text.split()]

    def __len__(self) -> int:
        return 100


def test_chat_uses_the_template_and_no_second_bos() -> None:
    tok = WordTok()
    msgs = [{"role": "user", "content": [{"type": "text", "text": "hi "},
                                         {"type": "text", "text": "there"}]}]
    assert chat_prompt(tok, msgs) == "<user>hi there<assistant>"
    chat_ids(tok, msgs)
    assert tok.seen == [("<user>hi there<assistant>", False)]


def test_plain_chat_without_a_template() -> None:
    assert plain_chat([{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": "Hi"}]) == \
        "system: Be brief.\nuser: Hi\nassistant:"


def test_completion_prompts() -> None:
    tok = WordTok()
    assert completion_ids(tok, "a bb") == [1, 2]
    assert completion_ids(tok, ["a bb"]) == [1, 2]
    assert completion_ids(tok, [5, 6]) == [5, 6]
    for bad in (["a", "b"], [500], ""):
        with pytest.raises(APIError) as exc:
            completion_ids(tok, bad)  # type: ignore[arg-type]
        assert exc.value.status == 400


# ---- request validation and response shapes ----------------------------------------------
@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": "x"}, "model"), ({"model": "m", "prompt": "x", "n": 2}, "n"),
    ({"model": "m", "prompt": "x", "temperature": -1}, "temperature"),
    ({"model": "m", "prompt": "x", "echo": True}, "echo"),
    ({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "m", "prompt": "x", "max_tokens": 0}, "max_tokens")])
def test_invalid_completion_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(APIError) as exc:
        parse(CompletionRequest, body)
    assert exc.value.status == 400 and exc.value.param == param


def test_chat_request_limits_and_unknown_fields() -> None:
    r = parse(ChatRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                            "max_completion_tokens": 7, "max_tokens": 3, "frequency_penalty": 0})
    assert r.limit() == 7
    with pytest.raises(APIError):
        parse(ChatRequest, {"model": "m", "messages": []})


def test_reply_shapes() -> None:
    chat = Reply("chat", "r1", "m")
    whole = chat.whole("hi", "stop", 3, 2)
    assert whole["object"] == "chat.completion" and whole["id"] == "chatcmpl-r1"
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert whole["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert chat.chunk("h", None, first=True)["choices"][0]["delta"] == \
        {"role": "assistant", "content": "h"}
    assert chat.chunk("", "length")["choices"][0]["delta"] == {}
    comp = Reply("completion", "r2", "m")
    assert comp.chunk("x", None)["choices"][0]["text"] == "x"
    assert comp.usage_chunk(1, 2)["choices"] == []


def test_the_entrys_retry_hint_becomes_the_retry_after_header() -> None:
    from edgesplit.errors import TooLarge
    from edgesplit.rpc.errors import retry_after_of, retry_metadata
    from services.gateway.errors import from_rpc_error

    class Busy(TooLarge):
        retry_after_s = 7.2

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    meta = grpc.aio.Metadata(*retry_metadata(Busy("full"), code, "full"))
    exc = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), meta, "full")
    assert retry_after_of(exc) == pytest.approx(7.2)  # RetryInfo, exact
    err = from_rpc_error(exc, retry_after_s=1)
    assert (err.status, err.headers["Retry-After"]) == (429, "8")
    plain = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "full")
    assert retry_after_of(plain) is None
    assert from_rpc_error(plain, retry_after_s=3).headers["Retry-After"] == "3"
    assert retry_metadata(TooLarge("x"), code, "x") == ()
