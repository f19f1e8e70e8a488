"""A fast constructor for frozen slots dataclasses (the tap makes several per packet it relays).

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, a call per field:
for a 20-field ``Record`` that was 3.6 µs of a packet's ~25 µs of decoding. ``constructor(cls)`` returns
a function with the same keyword parameters and defaults that fills a twin class with the same slots
(plain attribute stores) and then gives the object its real class. The result is an ordinary, frozen
instance of ``cls``: equal to what ``cls(...)`` makes (tests/test_frozen.py checks it field by field).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

_MISSING = object()


def constructor(cls: type) -> Callable[..., Any]:
    """``cls(**values)``, faster: ``cls`` must be ``@dataclass(frozen=True, slots=True)`` with no
    ``__post_init__``. Positional arguments are not taken (the hot paths name every field)."""
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen and "__slots__" in cls.__dict__):
        raise TypeError(f"{cls.__name__} is not a frozen slots dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__, which this constructor would skip")
    twin = type(f"_{cls.__name__}Builder", (), {"__slots__": cls.__slots__})
    scope: dict[str, Any] = {"_new": object.__new__, "_twin": twin, "_cls": cls, "_MISSING": _MISSING}
    params, body = [], []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            scope[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
            body.append(f"    o.{f.name} = {f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_f_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            body.append(f"    o.{f.name} = _f_{f.name}() if {f.name} is _MISSING else {f.name}")
        else:
            params.append(f.name)
            body.append(f"    o.{f.name} = {f.name}")
    source = (f"def new_{cls.__name__}(*, {', '.join(params)}):\n    o = _new(_twin)\n" + "\n".join(body)
              + "\n    o.__class__ = _cls\n    return o\n")
    exec(source, scope)  # noqa: S102 - generated from the dataclass's own field list, like dataclasses does
    function = scope[f"new_{cls.__name__}"]
    function.__doc__ = f"Make a {cls.__name__} (keyword arguments only), as {cls.__name__}(...) would."
    return function
