"""What the entry checks of a Generate request before it spends anything on it.

Everything here is cheap and runs before tokenising or touching a route:

* the prompt's size, in bytes, against a cap (an 8 MB prompt used to freeze
  the event loop in the tokenizer for 22 s before any length check);
* ``request_id`` as a label only (at most 64 of ``[A-Za-z0-9._-]``): session
  ids are made here, unguessable, so no client can name — and so end, fail
  or collide with — another client's session;
* the sampling temperature: 0 is greedy, anything else must be a finite
  number of at least ``min_temperature`` (1e-300 used to overflow the
  softmax into an INTERNAL error);
* a per-client quota of concurrent sessions, keyed by the caller's identity
  (certificate or token), so one client cannot hold every slot.

It also holds two logging rules of the service boundary: malformed requests
are logged rate-limited and without a traceback (they are the client's
fault, and a flood of them must not flood the log), and an unexpected error
reaches the client as a generic INTERNAL message with an error id, while the
details (with the traceback) go only to the server log under that id.

Errors are ``edgesplit.errors`` domain errors (they carry their status code);
this module imports neither grpc nor torch.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from edgesplit.errors import Code, DomainError, InvalidRequest

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Rejected(InvalidRequest):
    """The request is malformed or outside the limits, whatever the server's state."""


class QuotaExceeded(DomainError, RuntimeError):
    """The client already holds its share of concurrent sessions."""

    code = Code.RESOURCE_EXHAUSTED


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    max_prompt_bytes: int = 256 * 1024  # UTF-8 bytes of prompt text
    max_prompt_tokens: int = 32_768  # length of a pre-tokenised prompt
    min_temperature: float = 1e-2  # below it (and above 0) logits / t overflows
    max_sessions_per_client: int = 32


def check_prompt(prompt: str, token_ids: Sequence[int], limits: AdmissionLimits) -> None:
    """Exactly one of text or ids, each within its cap; never encodes a huge string."""
    if bool(prompt) == bool(token_ids):
        raise Rejected("give exactly one of prompt or token_ids", field="input")
    # A character is at least one UTF-8 byte: the length alone refuses most
    # oversized prompts, and encoding is then bounded by 4 x the cap.
    if len(prompt) > limits.max_prompt_bytes or \
            len(prompt.encode("utf-8", "surrogatepass")) > limits.max_prompt_bytes:
        raise Rejected(f"prompt is larger than {limits.max_prompt_bytes} bytes", field="prompt")
    if len(token_ids) > limits.max_prompt_tokens:
        raise Rejected(f"prompt has {len(token_ids)} token ids, more than "
                       f"{limits.max_prompt_tokens}", field="token_ids.ids")


def check_request_id(request_id: str) -> str:
    """The client's id as a tracing label ('' when none); never a session key."""
    if request_id and REQUEST_ID.fullmatch(request_id) is None:
        raise Rejected("request_id must be at most 64 characters of [A-Za-z0-9._-]",
                       field="request_id")
    return request_id


def check_temperature(temperature: float, limits: AdmissionLimits) -> None:
    if not math.isfinite(temperature) or temperature < 0:
        raise Rejected(f"temperature must be a finite number >= 0, not {temperature!r}",
                       field="sampling.temperature")
    if 0 < temperature < limits.min_temperature:
        raise Rejected(f"temperature must be 0 (greedy) or at least {limits.min_temperature}",
                       field="sampling.temperature")


def new_session_id() -> str:
    """A server-made session id: 128 random bits, hex."""
    return secrets.token_hex(16)


def client_key(identity_uri: str | None, peer: str) -> str:
    """Whose quota a call counts against: its certificate identity (or token
    identity) when it has one, else its network address without the port
    (``ipv4:10.0.0.5:4711`` -> ``ipv4:10.0.0.5``)."""
    if identity_uri:
        return identity_uri
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


class SessionQuota:
    """Concurrent sessions per client, at most ``per_client`` each (thread-safe)."""

    def __init__(self, per_client: int) -> None:
        self.per_client = max(1, per_client)
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, client: str) -> None:
        with self._lock:
            held = self._held.get(client, 0)
            if held >= self.per_client:
                raise QuotaExceeded(f"this client already has {held} sessions open "
                                    f"(at most {self.per_client})")
            self._held[client] = held + 1

    def release(self, client: str) -> None:
        with self._lock:
            held = self._held.get(client, 0) - 1
            if held > 0:
                self._held[client] = held
            else:
                self._held.pop(client, None)  # no entry per client ever seen

    def active(self, client: str) -> int:
        with self._lock:
            return self._held.get(client, 0)

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """``acquire`` now, ``release`` however the block ends."""
        self.acquire(client)
        try:
            yield
        finally:
            self.release(client)


class RateLimitedLog:
    """A token bucket in front of a logger: ``burst`` lines at once, then
    ``per_s`` a second; what it drops is counted into the next line. Never
    with a traceback: these are the client's mistakes, not the server's."""

    def __init__(self, logger: logging.Logger, per_s: float = 1.0, burst: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._rate, self._burst, self._clock = logger, per_s, float(burst), clock
        self._tokens = float(burst)
        self._last = clock()
        self.suppressed = 0
        self._lock = threading.Lock()

    def warning(self, msg: str, *args: Any) -> bool:
        """Log (True) or count it as suppressed (False)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1:
                self.suppressed += 1
                return False
            self._tokens -= 1
            dropped, self.suppressed = self.suppressed, 0
        if dropped:
            msg, args = msg + " (%d similar suppressed)", (*args, dropped)
        self._log.warning(msg, *args)
        return True
