"""Fast constructors for frozen slotted dataclasses on hot paths.

A frozen dataclass's generated ``__init__`` sets each field through
``object.__setattr__`` (its own ``__setattr__`` refuses), which costs about as
much as the rest of a monitor fold: the reducer makes one ``LinkEnv`` per link
of every report. ``maker(cls)`` returns a function with ``cls``'s signature
that sets the slots through their descriptors instead: the same object (equal,
same hash, still frozen), in about half the time. Only for classes whose
``__init__`` does nothing else (no ``__post_init__``, no default factories).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def maker(cls: type[T]) -> Callable[..., T]:
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not (params.frozen and "__slots__" in cls.__dict__) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: only for frozen slotted dataclasses without "
                        "__post_init__")
    ns: dict[str, Any] = {"new": object.__new__, "cls": cls}
    sig, body = [], []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not dataclasses.MISSING or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name}: default factories and init=False "
                            "fields are not supported")
        if f.default is dataclasses.MISSING:
            sig.append(f.name)
        else:
            ns[f"default_{f.name}"] = f.default
            sig.append(f"{f.name}=default_{f.name}")
        ns[f"set_{f.name}"] = cls.__dict__[f.name].__set__
        body.append(f"    set_{f.name}(o, {f.name})\n")
    src = f"def make({', '.join(sig)}):\n    o = new(cls)\n{''.join(body)}    return o\n"
    exec(src, ns)  # noqa: S102 - generated from field names, as dataclasses makes __init__
    make: Callable[..., T] = ns["make"]
    make.__doc__ = f"``{cls.__name__}(...)`` without its ``__init__``: see edgesplit.core.frozen."
    return make
