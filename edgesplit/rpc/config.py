"""Typed, validated service configuration (docs/architecture.md, "Configuration").

Each service defines one :class:`ServiceConfig` subclass (a frozen pydantic
model; every field has a default, a description and, where it has one, a
range) and builds it once in ``__main__`` with :func:`load_config`, which layers
defaults < a YAML file (``--config``) < ``EDGESPLIT_<FIELD>`` environment
variables < command-line flags, all read by pydantic-settings' own sources.
Every field is a ``--kebab-case`` flag; booleans are ``--flag`` / ``--no-flag``.
A value that does not validate stops the program with one line naming the
setting and where it came from, never a traceback.

Building a config with keywords (``MonitorConfig(alpha=0.5)``) validates the
same way but reads nothing else: tests and in-process servers get exactly what
they pass.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BeforeValidator, Field, NonNegativeFloat, PositiveFloat, ValidationError
from pydantic_settings import (
    BaseSettings,
    CliSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

C = TypeVar("C", bound="ServiceConfig")
ENV_PREFIX = "EDGESPLIT_"


def _split_commas(raw: Any) -> Any:
    if isinstance(raw, str):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


# A list setting: "a,b" in a flag or variable, a YAML list in a file.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_commas)]


def opt(default: Any, help: str, **limits: Any) -> Any:
    """A setting: its default, its help (``--help`` shows both) and any limits
    beyond its type's (``ge=``, ``le=``, ``pattern=``...)."""
    return Field(default, description=help, **limits)


def _upper(raw: Any) -> Any:
    return raw.upper() if isinstance(raw, str) else raw


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                     BeforeValidator(_upper)]
WireDtype = Literal["float32", "bfloat16", "float16"]
# An EWMA weight: 0 would freeze the average at its first sample.
EwmaWeight = Annotated[float, Field(gt=0, le=1)]


class ServiceConfig(BaseSettings):
    """Settings every service shares."""

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", env_prefix=ENV_PREFIX, validate_default=True,
        cli_kebab_case=True, cli_implicit_flags=True, cli_avoid_json=True,
        cli_hide_none_type=True, cli_enforce_required=False)

    listen: str = opt("127.0.0.1:0", "gRPC listen address host:port (port 0 picks a free one)")
    metrics_listen: str = opt("", "Prometheus metrics address host:port (empty: off)")
    max_message_bytes: int = opt(64 * 1024 * 1024, "max gRPC message size sent or received",
                                 ge=64 * 1024)
    grace_s: NonNegativeFloat = opt(5.0, "seconds in-flight calls get to finish on SIGTERM")
    tls_cert: str = opt("", "PEM certificate of this service (enables TLS)")
    tls_key: str = opt("", "PEM private key of this service")
    tls_ca: str = opt("", "PEM CA that signs peers' certificates (enables mTLS)")
    insecure: bool = opt(False, "plaintext without certificates (development only): refused "
                                "unless this service listens and calls on loopback")
    rpc_timeout_s: PositiveFloat = opt(10.0, "deadline of outgoing calls")
    log_level: LogLevel = opt("INFO", "logging level")
    ready_file: str = opt("", "write 'host:port' here once serving (for supervisors and tests)")
    reflection: bool = opt(False, "serve gRPC server reflection (admin callers only); it lists "
                                  "every method, so it is off unless asked for")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keywords only: load_config is the one place that reads files, env and flags.
        return (init_settings,)


class _Environment(EnvSettingsSource):
    """``EDGESPLIT_*`` variables of ``env`` (default: the process environment)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str] | None) -> None:
        self._given = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self._given is None:
            return super()._load_env_vars()
        return {k.lower(): v for k, v in self._given.items()}  # names are case-insensitive


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"--config {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise SystemExit(f"--config {path}: expected a mapping of settings")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def explain(exc: ValidationError, origin: Mapping[str, str]) -> str:
    """One line per bad setting: its name, where its value came from, and why."""
    lines = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "?"
        where = origin.get(name, "default")
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting {name!r} (from {where})")
            continue
        lines.append(f"setting {name} (from {where}): {err['msg']}, got {err['input']!r}")
    return "; ".join(lines)


def load_config(cls: type[C], argv: Sequence[str] | None = None,
                env: Mapping[str, str] | None = None, prog: str | None = None) -> C:
    """Build ``cls`` from defaults < YAML (``--config``) < ``EDGESPLIT_*`` < flags.

    ``--help`` lists every setting with its help and default. A bad value exits
    with status 2 and a message naming the setting (argparse's convention)."""
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__,
                                     usage="%(prog)s [--config FILE.yaml] [--SETTING VALUE ...]")
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="YAML file of settings (environment and flags override it)")
    cli: CliSettingsSource[C] = CliSettingsSource(cls, root_parser=parser)
    args = parser.parse_args(argv)
    layers: list[tuple[str, dict[str, Any]]] = []
    if args.config:
        layers.append((f"--config {args.config}", _read_yaml(args.config)))
    layers.append(("environment", _Environment(cls, env)()))
    layers.append(("flags", cli(parsed_args=args)()))
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for label, layer in layers:
        for name, value in layer.items():
            if name == "config":
                continue
            values[name] = value
            origin[name] = (_flag(name) if label == "flags" else
                            ENV_PREFIX + name.upper() if label == "environment" else label)
    try:
        return cls(**values)
    except ValidationError as exc:
        parser.error(explain(exc, origin))
