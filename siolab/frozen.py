"""The one fast constructor of siolab's frozen records (the tap makes several per packet it relays).

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, a call per field:
for a 20-field ``Record`` that was 3.6 µs of a packet's ~25 µs of decoding (docs/benchmarks.md).
``constructor(cls)`` returns a function with the same keyword parameters and defaults that fills a
*twin* of ``cls`` (a class with the same base and slots, no frozen ``__setattr__``) with plain attribute stores,
then gives the object its real class.

The invariant, which tests/test_frozen.py checks field by field: what ``constructor(cls)(**values)``
makes is an ordinary instance of ``cls``, equal to what ``cls(**values)`` makes. ``cls`` is a frozen
slots dataclass, or a subclass of one that adds slots only (e.g. ``record.LazyRecord``); a subclass's
own slots become required keyword parameters.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

_MISSING = object()
_TWINS: dict[type, type] = {}


def _twin(cls: type) -> type:
    """A sibling of ``cls``: the same base, the same own slots (so an object can change class between the
    two), and plain attribute stores instead of a frozen dataclass's ``__setattr__``."""
    twin = _TWINS.get(cls)
    if twin is None:
        if "__slots__" not in cls.__dict__ or len(cls.__bases__) != 1:
            raise TypeError(f"{cls.__name__} is not a slots class with one base")
        slots = cls.__dict__["__slots__"]
        twin = _TWINS[cls] = type(f"_{cls.__name__}Twin", cls.__bases__, {
            "__slots__": (slots,) if isinstance(slots, str) else tuple(slots), "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__})
    return twin


def constructor(cls: type) -> Callable[..., Any]:
    """``cls(**values)``, faster (keyword arguments only: the hot paths name every field)."""
    base: Any = next((c for c in cls.__mro__ if "__dataclass_params__" in c.__dict__), None)
    if base is None or not (base.__dataclass_params__.frozen and "__slots__" in base.__dict__):
        raise TypeError(f"{cls.__name__} is not a frozen slots dataclass (or a subclass of one)")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__, which this constructor would skip")
    extra = [name for c in cls.__mro__[: cls.__mro__.index(base)] for name in c.__dict__.get("__slots__", ())]
    scope: dict[str, Any] = {"_new": object.__new__, "_twin": _twin(cls), "_cls": cls, "_MISSING": _MISSING}
    params, body = [], []
    for f in dataclasses.fields(base):
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
    for name in extra:
        params.append(name)
        body.append(f"    o.{name} = {name}")
    source = (f"def new_{cls.__name__}(*, {', '.join(params)}):\n    o = _new(_twin)\n" + "\n".join(body)
              + "\n    o.__class__ = _cls\n    return o\n")
    exec(source, scope)  # noqa: S102 - generated from the dataclass's own field list, like dataclasses does
    function = scope[f"new_{cls.__name__}"]
    function.__doc__ = f"Make a {cls.__name__} (keyword arguments only), as {cls.__name__}(...) would."
    return function
