"""Shared base classes for wire types.

Every wire type is a frozen, keyword-only msgspec Struct so that it can be encoded
deterministically and cannot be mutated after it is built.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

CONTRACTS_VERSION = "1"
"""Bumped whenever a wire type changes meaning; part of every cache key."""


class Wire(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every wire type that tolerates unknown fields (forward compatible)."""


class StrictWire(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of configuration types written by people: unknown keys are errors."""


class FrozenDict(dict[Any, Any]):
    """A dict that refuses every change: what events hold (they are values)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("an event's data cannot be changed")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __reduce__(self) -> Any:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: Any) -> FrozenDict:
        return self


class FrozenList(list[Any]):
    """A list that refuses every change (compares equal to a list)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("an event's data cannot be changed")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self) -> Any:
        return (FrozenList, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: Any) -> FrozenList:
        return self


def freeze(value: Any) -> Any:
    """``value`` with every dict and list inside it (Structs included) made
    immutable, and copied: the result shares no mutable container with ``value``."""
    kind = type(value)
    if kind is dict or kind is FrozenDict:
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if kind is list or kind is FrozenList:
        return FrozenList(freeze(v) for v in value)
    if kind is tuple:
        return tuple(freeze(v) for v in value)
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            item = getattr(value, name)
            if not isinstance(item, str | int | float | bool | None):
                msgspec.structs.force_setattr(value, name, freeze(item))
        return value
    return value


_ENCODER = msgspec.json.Encoder(order="deterministic")


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` with sorted keys so that equal values give equal bytes."""
    return _ENCODER.encode(obj)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_hash(obj: Any) -> str:
    """A hash of the canonical JSON of ``obj``; independent of dict order and process."""
    return sha256_hex(canonical_json(obj))
