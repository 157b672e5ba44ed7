"""The store's format: every name, version, path rule, tap description and fingerprint,
named here once so that the writers, the reader, the checks and ``docs/store-format.md``
agree. A store is readable by plain h5py:

    >>> import h5py                                          # doctest: +SKIP
    >>> f = h5py.File("feats.h5")                            # doctest: +SKIP
    >>> f["features/pool"].shape, f["ids"][:3], f.attrs["backbone_sha256"]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedkit.contract import Tap as TapInfo  # one feature set: the ONNX contract's tap type
from embedkit.files import json_plain

SCHEMA_VERSION = 2
FORMAT_NAME = "embedkit-feature-store"  # root attribute 'format' of a store's index file
SHARD_FORMAT = "embedkit-shard"  # ... of a shard
COLUMN_FORMAT = "embedkit-columns"  # ... of a column file (labels and split)
USERBLOCK = 512  # bytes before the HDF5 superblock: the file's CRC-32 (files/integrity.py)
META = "_store"  # index group: shards and columns (file names) and rowmap (segments)
SELF = ""  # shard name of a self-contained store: the index file itself
FILE_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*\.h5")  # a shard or column file's name
CONTENT_NAME = re.compile(r"[0-9a-f]{32}\.h5")  # ... named by the hash of its content
RESTORE = "re-run extract or restore the store"  # the advice of a structural problem

# Dataset names (see docs/store-format.md).
IDS = "ids"  # (N,) variable-length UTF-8: unique item ids
DIGESTS = "digests"  # (N,) S64: sha256 hex of each item's raw content
ID_HASH = "id_hash"  # (N,) S16 in shards: sha256 of the id, first 16 bytes (fast lookups)
LABELS = "labels"  # (N,) int64: class index, -1 where unlabelled
LABEL_NAMES = "label_names"  # (K,) variable-length UTF-8: class names, index = label
SPLIT = "split"  # (N,) S8: "train" / "val" / "test" / "" (unset)
FEATURES = "features"  # group: one (N, *shape) dataset per tap
BAD = "bad"  # group: ids, digests and reasons of items skipped with --skip-bad

SPLITS = ("train", "val", "test")
STORAGE_DTYPES = ("float32", "float16")


# -- where a store's files live -------------------------------------------------------------
SHARDS, COLUMNS, JOURNAL = "shards", "columns", "journal"  # sub-folders of STORE.d/
VERSIONS = "versions"  # STORE.d/versions/00000012.h5: one immutable file per commit
_VERSION = re.compile(r"(\d{8})\.h5")
LOCK, LOCK_INFO = "lock", "lock.json"  # the writer lock and its holder's pid


def sidecar(store) -> Path:
    """``STORE.d``: the folder beside a store that holds its files, journal and lock."""
    return Path(f"{store}.d")


def shard_dir(store) -> Path:
    """``STORE.d/shards``: the store's immutable shard files."""
    return sidecar(store) / SHARDS


def shard_path(store, name: str) -> Path:
    """The file of shard ``name`` (the store file itself for a self-contained store)."""
    return Path(store) if name == SELF else shard_dir(store) / name


def column_dir(store) -> Path:
    """``STORE.d/columns``: the column files (labels and split) of the store."""
    return sidecar(store) / COLUMNS


def journal_dir(store) -> Path:
    """``STORE.d/journal``: an unfinished extract's rows."""
    return sidecar(store) / JOURNAL


def version_dir(store) -> Path:
    """``STORE.d/versions``: one immutable index per commit, numbered from 1."""
    return sidecar(store) / VERSIONS


def version_path(store, number: int) -> Path:
    """The file of version ``number`` (``STORE.d/versions/00000012.h5``)."""
    return version_dir(store) / f"{int(number):08d}.h5"


def versions(store) -> list[int]:
    """The version numbers the store's folder holds, oldest first."""
    folder = version_dir(store)
    if not folder.is_dir():
        return []
    found = (_VERSION.fullmatch(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


# Fields of the fingerprint, in the order a mismatch is reported.
FINGERPRINT_FIELDS = ("schema_version", "backbone_sha256", "taps", "preprocess", "dtype")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=json_plain)


@dataclass(frozen=True)
class Fingerprint:
    """What makes two extractions interchangeable: rows may be mixed only if all fields match.

    Examples
    --------
    >>> a = Fingerprint.create("ab" * 32, [TapInfo("pool", (8,))], {"kind": "array"})
    >>> b = Fingerprint.create("cd" * 32, [TapInfo("pool", (8,))], {"kind": "array"})
    >>> a.first_difference(b)
    'backbone_sha256'
    """

    schema_version: int
    backbone_sha256: str  # sha256 of the ONNX file's bytes ("arrays" for user-supplied features)
    taps: str  # canonical JSON of the TapInfo dicts
    preprocess: str  # canonical JSON of the preprocessing spec
    dtype: str  # storage dtype
    tap_infos: tuple[TapInfo, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def create(
        cls,
        backbone_sha256: str,
        taps: list[TapInfo] | tuple[TapInfo, ...],
        preprocess: dict | None,
        dtype: str = "float32",
    ) -> Fingerprint:
        if dtype not in STORAGE_DTYPES:
            raise ValueError(
                f"dtype {dtype!r} is not valid; use one of {', '.join(STORAGE_DTYPES)}"
            )
        taps = tuple(TapInfo.from_dict({**t.to_dict(), "dtype": dtype}) for t in taps)
        if not taps:
            raise ValueError("a store needs at least one tap")
        names = [t.name for t in taps]
        if len(set(names)) != len(names):
            raise ValueError(f"tap names must be unique, got {names}")
        return cls(
            schema_version=SCHEMA_VERSION,
            backbone_sha256=str(backbone_sha256),
            taps=_taps_json(taps),
            preprocess=canonical_json(preprocess or {}),
            dtype=dtype,
            tap_infos=taps,
        )

    @classmethod
    def from_attrs(cls, attrs) -> Fingerprint:
        dtype = as_text(attrs["dtype"])
        taps = tuple(
            TapInfo.from_dict({**t, "dtype": dtype}) for t in json.loads(as_text(attrs["taps"]))
        )
        return cls(
            schema_version=int(attrs["schema_version"]),
            backbone_sha256=as_text(attrs["backbone_sha256"]),
            taps=_taps_json(taps),
            preprocess=canonical_json(json.loads(as_text(attrs["preprocess"]))),
            dtype=dtype,
            tap_infos=taps,
        )

    def to_attrs(self) -> dict:
        return {f: getattr(self, f) for f in FINGERPRINT_FIELDS} | {"fingerprint": self.digest}

    @property
    def digest(self) -> str:
        """sha256 over all fingerprint fields."""
        payload = canonical_json({f: getattr(self, f) for f in FINGERPRINT_FIELDS})
        return hashlib.sha256(payload.encode()).hexdigest()

    def first_difference(self, other: Fingerprint) -> str | None:
        """Name of the first field that differs, or None when the fingerprints match."""
        fields = FINGERPRINT_FIELDS
        return next((f for f in fields if getattr(self, f) != getattr(other, f)), None)


def _taps_json(taps) -> str:
    # The storage dtype is its own fingerprint field, so it is left out of the taps.
    return canonical_json([{k: v for k, v in t.to_dict().items() if k != "dtype"} for t in taps])


def tap_attrs(tap: TapInfo) -> dict:
    """A tap's description as the HDF5 attributes of its dataset (lists as JSON, None as "")."""
    return {k: json.dumps(v) if isinstance(v, list) else "" if v is None else v
            for k, v in tap.to_dict().items()}  # fmt: skip


def as_text(value):
    """Decode the ``bytes`` that h5py returns for some strings; other values pass through."""
    return value.decode() if isinstance(value, bytes) else value
