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


_ENCODER = msgspec.json.Encoder(order="deterministic")


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` with sorted keys so that equal values give equal bytes."""
    return _ENCODER.encode(obj)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_hash(obj: Any) -> str:
    """A hash of the canonical JSON of ``obj``; independent of dict order and process."""
    return sha256_hex(canonical_json(obj))
