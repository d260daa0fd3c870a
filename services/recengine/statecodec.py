"""The checkpoint format: a nested state as JSON plus numpy arrays, checksummed, no pickle.

A checkpoint is read from a store other processes write to (a shared directory, GridFS), so
reading one must never run code: pickle (``torch.load(weights_only=False)``) would. It is also
read after crashes, so a torn or corrupt one must be noticed before any of it is used. The
layout, in one blob::

    b"RECSTATE1\\n" | SHA-256 of the rest (32 bytes) | JSON length (8 bytes, big-endian)
    | JSON tree | .npz of the arrays (np.savez, read with allow_pickle=False)

The tree is exact for what a learner's state holds: ``None``, bools, ints of any size, floats
(NaN and infinities included, written by ``repr`` so they read back bit for bit), strings,
lists, and these as one-key objects:

- ``{"$a": n}`` numpy array ``a<n>`` of the npz (any dtype but ``object``), ``{"$s": n}`` a
  numpy scalar (stored as a 0-d array, read back as the same scalar type);
- ``{"$t": [...]}`` a tuple;
- ``{"$d": [[key, value], ...]}`` a dict whose keys are not all strings, or where a key
  starts with ``$`` (int-keyed dicts: item rows, the optimizer's parameter ids).

Reading needs numpy only (no torch): any tool can inspect a checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np

from recengine.errors import ArtifactError

MAGIC = b"RECSTATE1\n"
_HEAD = len(MAGIC) + 32 + 8


class CorruptState(ArtifactError):
    """A checkpoint that is torn, corrupt or not in this format."""


def encode(state: object) -> bytes:
    """The checkpoint bytes of ``state`` (TypeError for a value the format cannot hold)."""
    arrays: dict[str, np.ndarray] = {}

    def tree(v: object) -> Any:
        if v is None or isinstance(v, bool | int | float | str):
            return v
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise TypeError("object arrays cannot be stored without pickle")
            arrays[f"a{len(arrays)}"] = v
            return {"$a": len(arrays) - 1}
        if isinstance(v, np.generic):
            arrays[f"a{len(arrays)}"] = np.asarray(v)
            return {"$s": len(arrays) - 1}
        if isinstance(v, list):
            return [tree(x) for x in v]
        if isinstance(v, tuple):
            return {"$t": [tree(x) for x in v]}
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in v):
                return {k: tree(x) for k, x in v.items()}
            return {"$d": [[tree(k), tree(x)] for k, x in v.items()]}
        raise TypeError(f"a checkpoint cannot hold a {type(v).__name__}")

    doc = json.dumps(tree(state), separators=(",", ":"), allow_nan=True).encode()
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # no object arrays (refused above): nothing to pickle
    body = len(doc).to_bytes(8, "big") + doc + buf.getvalue()
    return MAGIC + hashlib.sha256(body).digest() + body


def decode(data: bytes) -> Any:
    """The state :func:`encode` wrote, checked against its checksum before anything is read;
    :class:`CorruptState` for anything else."""
    if len(data) < _HEAD or not data.startswith(MAGIC):
        raise CorruptState(f"not a checkpoint in the {MAGIC[:-1].decode()} format "
                           f"({len(data)} bytes)")
    digest, body = data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptState(f"checkpoint checksum mismatch ({len(data)} bytes, torn or corrupt)")
    size = int.from_bytes(body[:8], "big")
    try:
        doc = json.loads(body[8:8 + size])
        with np.load(io.BytesIO(body[8 + size:]), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        return _untree(doc, arrays)
    except (ValueError, KeyError, TypeError, OSError, EOFError, IndexError) as exc:
        # The checksum matched, so the writer wrote this: a format this reader does not know.
        raise CorruptState(f"checkpoint not readable: {type(exc).__name__}: {exc}") from None


def _untree(v: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(v, list):
        return [_untree(x, arrays) for x in v]
    if not isinstance(v, dict):
        return v
    if len(v) == 1:
        (tag, x), = v.items()
        if tag == "$a":
            return arrays[f"a{x}"]
        if tag == "$s":
            return arrays[f"a{x}"][()]
        if tag == "$t":
            return tuple(_untree(y, arrays) for y in x)
        if tag == "$d":
            return {_hashable(_untree(k, arrays)): _untree(y, arrays) for k, y in x}
    return {k: _untree(x, arrays) for k, x in v.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, list | np.ndarray):
        raise TypeError("a dict key must be a scalar, string or tuple")
    return key
