"""Typed service configuration from defaults, a YAML file, ``EDGESPLIT_*``
environment variables and command-line flags (in that order of precedence).

Each service defines one frozen dataclass deriving from :class:`ServiceConfig`
and builds it once in ``__main__`` with :func:`load_config` (STYLE.md 7). Every
field becomes a ``--flag`` (underscores -> dashes) and an ``EDGESPLIT_FIELD``
variable; the dataclass field's ``metadata["help"]`` is the flag's help.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C", bound="ServiceConfig")


def opt(default: Any, help: str) -> Any:
    """A config field with its help text."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Settings every service shares."""

    listen: str = opt("127.0.0.1:0", "gRPC listen address host:port (port 0 picks a free one)")
    metrics_listen: str = opt("", "Prometheus metrics address host:port (empty: off)")
    max_message_bytes: int = opt(64 * 1024 * 1024, "max gRPC message size sent or received")
    grace_s: float = opt(5.0, "seconds in-flight calls get to finish on SIGTERM")
    tls_cert: str = opt("", "PEM certificate of this service (enables TLS)")
    tls_key: str = opt("", "PEM private key of this service")
    tls_ca: str = opt("", "PEM CA that signs peers' certificates (enables mTLS)")
    rpc_timeout_s: float = opt(10.0, "deadline of outgoing calls")
    log_level: str = opt("INFO", "logging level")
    ready_file: str = opt("", "write 'host:port' here once serving (for supervisors/tests)")
    reflection: bool = opt(False, "serve gRPC server reflection (admin callers only); it lists "
                                  "every method, so it is off unless asked for")


def _field_type(cls: type, field: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[field.name]


def _parse_value(kind: Any, raw: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (list, tuple, Sequence):
        if isinstance(raw, str):
            raw = [item for item in raw.split(",") if item]
        (inner, *_) = typing.get_args(kind) or (str,)
        return tuple(_parse_value(inner, item) for item in raw)
    if origin in (dict, Mapping):
        if isinstance(raw, str):
            raw = dict(pair.split("=", 1) for pair in raw.split(",") if pair)
        return dict(raw)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return None if raw in (None, "") else _parse_value(args[0], raw)
    if kind is bool:
        if isinstance(raw, str):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return bool(raw)
    if kind in (int, float, str):
        return kind(raw)
    return raw


def add_arguments(parser: argparse.ArgumentParser, cls: type[ServiceConfig]) -> None:
    """Add ``--config`` and one flag per field (default None: unset)."""
    parser.add_argument("--config", help="YAML file with settings (flags and env override it)")
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, dest=field.name, default=None,
                            help=field.metadata.get("help", ""))


def load_config(cls: type[C], argv: Sequence[str] | None = None,
                env: Mapping[str, str] | None = None, prog: str | None = None) -> C:
    """Build ``cls`` from defaults < YAML < environment < flags."""
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__)
    add_arguments(parser, cls)
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if args.config:
        loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"{args.config}: expected a mapping of settings")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = {k.replace("-", "_") for k in loaded} - names
        if unknown:
            raise SystemExit(f"{args.config}: unknown settings {sorted(unknown)}")
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
    for field in dataclasses.fields(cls):
        env_name = "EDGESPLIT_" + field.name.upper()
        if env_name in env:
            values[field.name] = env[env_name]
        flag_value = getattr(args, field.name)
        if flag_value is not None:
            values[field.name] = flag_value
    parsed = {name: _parse_value(_field_type(cls, next(f for f in dataclasses.fields(cls)
                                                         if f.name == name)), raw)
              for name, raw in values.items()}
    return cls(**parsed)
