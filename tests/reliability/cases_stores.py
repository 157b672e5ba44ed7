"""The battery's store cases: damaged index files, shards and one-file (schema 1) stores.

Each case copies a seed store (conftest.py: ``lab``, a labelled 60 x 3 v2 store; ``lab_v1``,
the same rows as a schema-1 file; ``array``, a store extracted with the tiny array model),
damages the copy in one way (a setup function), and runs one command on it (an intact
schema-1 store is refused by every command but ``store upgrade``). Every
command that opens a store must refuse it with one line naming the file and the field,
exit 2, and leave every byte as it was; ``store verify`` also finds what the cheap checks
on open leave to it (NaN features, a shard swapped for one of the same shape).
"""

# ruff: noqa: E501 - the tables read best one case per line
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from tests.reliability.cases_images import GOOD_X, npy
from tests.reliability.harness import Case

S = "{d}/lab.h5"
COMMANDS = {
    "info": ("info", S),
    "train": ("train", S, "--head", "centroid", "--out", "{d}/h"),
    "bench": ("bench", S, "--out", "{d}/b", "--quiet", "--heads", "centroid", "--seeds", "1"),
    "predict": ("predict", "{d}/head", S, "--out", "{d}/p.csv"),
    "audit": ("audit", S, "--out", "{d}/a"),
    "split": ("split", S, "--force", "--retest"),
    "verify": ("store", "verify", S),
    "compact": ("store", "compact", S),
    "pack": ("store", "pack", S, "{d}/packed.h5"),
    "upgrade": ("store", "upgrade", S),
    "extract": ("extract", "{array}", "{d}/x.npy", "--out", S, "--quiet"),
}


# -- damage ----------------------------------------------------------------------------------
def _shard(folder: Path, store: str = "lab.h5") -> Path:
    (path,) = (folder / f"{store}.d" / "shards").iterdir()
    return path


def _index(change):
    """Apply ``change(f)`` to the store's index file (the whole file for schema 1)."""

    def setup(folder: Path, assets) -> None:
        with h5py.File(folder / "lab.h5", "r+") as f:
            change(f)

    return setup


def _in_shard(change):
    def setup(folder: Path, assets) -> None:
        with h5py.File(_shard(folder), "r+") as f:
            change(f)

    return setup


def _attr(key: str, value=None):
    def change(f) -> None:
        if value is None:
            del f.attrs[key]
        else:
            f.attrs[key] = value

    return _index(change)


def _dataset(name: str, edit):
    """Replace dataset ``name`` by ``edit(old values)`` (None: delete it)."""

    def change(f) -> None:
        old = f[name][...]
        dtype = f[name].dtype
        del f[name]
        new = edit(old)
        if new is not None:
            f.create_dataset(name, data=new, dtype=dtype)

    return _index(change)


def _set_row(name: str, row: int, value):
    def edit(values):
        values = values.copy()
        values[row] = value
        return values

    return _dataset(name, edit)


def _taps_width(width: int):
    def change(f) -> None:
        taps = json.loads(f.attrs["taps"])
        taps[0]["shape"] = [width]
        f.attrs["taps"] = json.dumps(taps)

    return _index(change)


def _bytes(target, edit):
    """Rewrite the bytes of a file: ``target(folder)`` names it, ``edit(bytes)`` changes them."""

    def setup(folder: Path, assets) -> None:
        path = target(folder)
        path.write_bytes(edit(path.read_bytes()))

    return setup


def _index_file(folder: Path) -> Path:
    return folder / "lab.h5"


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _zero_middle(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes(4096) + data[mid + 4096 :]


def _folder_as_store(folder: Path, assets) -> None:
    (folder / "lab.h5").unlink()
    (folder / "lab.h5").mkdir()


def _remove_shard(folder: Path, assets) -> None:
    _shard(folder).unlink()


def _swap_shard(other: str):
    """Put the shard of the seed copied to ``other`` in place of lab's (same file name)."""

    def setup(folder: Path, assets) -> None:
        target = _shard(folder)
        shutil.copyfile(_shard(folder, other), target)

    return setup


def _duplicate_id(f) -> None:
    for name in ("ids", "id_hash"):
        values = f[name][...]
        values[1] = values[0]
        f[name][...] = values


def _nan_row(f) -> None:
    ds = f["features/features"]
    row = ds[7]
    row[1] = np.nan
    ds[7] = row


def _as_written(folder: Path, assets) -> None:
    """No damage: the seed as it is."""


def _stray_tmp(folder: Path, assets) -> None:
    (folder / "lab.h5.d" / "shards" / "x.h5.tmp-123").write_bytes(b"half")


# -- the table -------------------------------------------------------------------------------
# (fault, setup, words the error names, commands, seed of lab.h5); the store name is always named
V2 = "lab"
V1 = "lab_v1"
SWAPS = ("shard_fewer_rows", "shard_other_width", "shard_same_shape_swapped")
# fmt: off
FAULTS = [
    # the index file itself
    ("index_truncated", _bytes(_index_file, _half), (), ("info", "train", "verify", "extract"), V2),
    ("index_zeroed_block", _bytes(_index_file, _zero_middle), (), ("info", "bench", "verify"), V2),
    ("index_not_hdf5", _bytes(_index_file, lambda b: b"not an hdf5 file\n" * 50), ("HDF5",), ("info", "predict", "verify", "extract"), V2),
    ("index_empty", _bytes(_index_file, lambda b: b""), (), ("train", "verify", "compact"), V2),
    ("index_is_folder", _folder_as_store, ("folder",), ("info", "train", "verify", "extract"), V2),
    # root attributes
    ("attr_no_taps", _attr("taps"), ("'taps'", "missing"), ("info", "train", "verify", "extract"), V2),
    ("attr_no_dtype", _attr("dtype"), ("'dtype'", "missing"), ("info", "predict", "pack"), V2),
    ("attr_no_schema_version", _attr("schema_version"), ("'schema_version'",), ("info", "bench", "verify"), V2),
    ("attr_no_format", _attr("format"), ("'format'", "missing"), ("info", "verify", "upgrade"), V2),
    ("attr_no_preprocess", _attr("preprocess"), ("'preprocess'",), ("train", "verify"), V2),
    ("attr_no_backbone", _attr("backbone_sha256"), ("'backbone_sha256'",), ("info", "audit"), V2),
    ("attr_taps_bad_json", _attr("taps", "[{"), ("'taps'", "JSON"), ("info", "train", "predict", "verify", "extract"), V2),
    ("attr_preprocess_bad_json", _attr("preprocess", "{kind:"), ("'preprocess'", "JSON"), ("info", "bench", "verify"), V2),
    ("attr_runs_bad_json", _attr("runs", "[1,"), ("'runs'", "JSON"), ("info", "train", "verify"), V2),
    ("attr_taps_object", _attr("taps", '{"name": "features"}'), ("'taps'", "not a list"), ("info", "verify"), V2),
    ("attr_taps_empty", _attr("taps", "[]"), ("'taps'", "empty"), ("info", "train"), V2),
    ("attr_tap_not_object", _attr("taps", "[3]"), ("'taps' entry 0",), ("info", "verify"), V2),
    ("attr_tap_shape_text", _attr("taps", '[{"name": "features", "shape": "3"}]'), ("'taps' entry 0", "'shape'"), ("info", "predict"), V2),
    ("attr_schema_version_text", _attr("schema_version", "two"), ("'schema_version'",), ("info", "train", "verify"), V2),
    ("attr_schema_version_newer", _attr("schema_version", 99), ("schema version 99",), ("info", "extract"), V2),
    ("attr_dtype_int", _attr("dtype", 5), ("'dtype'",), ("info", "verify"), V2),
    ("attr_dtype_float64", _attr("dtype", "float64"), ("'dtype'", "float64"), ("info", "bench"), V2),
    ("attr_n_items_wrong", _attr("n_items", 61), ("'n_items'",), ("info", "verify"), V2),
    # lengths, widths, values
    ("labels_fewer_rows", _dataset("labels", lambda v: v[:-1]), ("/", "rows"), ("info", "train", "predict", "verify", "extract"), V2),
    ("split_fewer_rows", _dataset("split", lambda v: v[:-1]), ("/split", "59 rows"), ("info", "bench", "verify"), V2),
    ("labels_missing", _dataset("labels", lambda v: None), ("/labels", "missing"), ("info", "train", "verify"), V2),
    ("labels_float", _index(lambda f: (f.__delitem__("labels"), f.create_dataset("labels", data=np.zeros(60)))), ("/labels",), ("info", "verify"), V2),
    ("width_disagrees_with_taps", _taps_width(4), ("/features/", "'taps'"), ("info", "train", "predict", "bench", "verify", "extract"), V2),
    ("label_beyond_names", _set_row("labels", 5, 7), ("/labels row 5", "/label_names"), ("info", "train", "bench", "audit", "verify"), V2),
    ("label_below_minus_one", _set_row("labels", 9, -4), ("/labels row 9",), ("info", "train"), V2),
    ("label_names_twice", _dataset("label_names", lambda v: np.asarray([v[0], v[0], v[2]], dtype=object)), ("/label_names", "twice"), ("info", "train", "verify"), V2),
    ("split_value_unknown", _set_row("split", 3, b"bogus"), ("/split row 3",), ("info", "bench", "split", "verify"), V2),
    ("rowmap_short", _dataset("_store/rowmap", lambda v: np.asarray([[0, 0, 0, 59]])), ("/_store/rowmap",), ("info", "train", "verify", "compact"), V2),
    ("rowmap_three_columns", _dataset("_store/rowmap", lambda v: v[:, :3]), ("/_store/rowmap", "columns"), ("info", "verify"), V2),
    ("shards_name_escapes", _dataset("_store/shards", lambda v: np.asarray(["../../x.h5"], dtype=object)), ("/_store/shards",), ("info", "train", "verify", "extract"), V2),
    ("bad_group_lengths", _dataset("bad/reasons", lambda v: np.asarray(["x"], dtype=object)), ("/bad",), ("info", "verify"), V2),
    # shards
    ("shard_missing", _remove_shard, ("shard", "is missing"), ("info", "train", "predict", "bench", "verify", "extract", "compact"), V2),
    ("shard_truncated", _bytes(_shard, _half), ("shard", "truncated"), ("info", "train", "predict", "verify", "extract", "pack"), V2),
    ("shard_not_hdf5", _bytes(_shard, lambda b: b"\x00" * len(b)), ("shard",), ("info", "bench", "verify"), V2),
    ("shard_duplicate_id", _in_shard(_duplicate_id), ("/ids", "twice"), ("info", "train", "bench", "verify", "extract"), V2),
    ("shard_fewer_rows", _swap_shard("short.h5"), ("shard", "rows"), ("info", "train", "predict", "verify"), V2),
    ("shard_other_width", _swap_shard("wide.h5"), ("shard", "another store"), ("info", "train", "predict", "verify", "extract"), V2),
    ("shard_same_shape_swapped", _swap_shard("twin.h5"), ("shard", "does not hash to its name"), ("verify",), V2),
    ("shard_nan_feature", _in_shard(_nan_row), ("shard", "row 7", "NaN"), ("verify",), V2),
    ("debris_tmp_file", _stray_tmp, ("x.h5.tmp-123", "debris"), ("verify",), V2),
    # schema-1 (one-file) stores
    ("v1_truncated", _bytes(_index_file, _half), ("truncated",), ("info", "train", "verify", "upgrade"), V1),
    ("v1_no_taps", _attr("taps"), ("'taps'",), ("info", "train", "verify", "extract"), V1),
    ("v1_taps_bad_json", _attr("taps", "not json"), ("'taps'", "JSON"), ("info", "predict", "verify"), V1),
    ("v1_dtype_list", _attr("dtype", np.array([1, 2])), ("'dtype'",), ("info", "verify"), V1),
    ("v1_fewer_feature_rows", _dataset("features/features", lambda v: v[:-1]), ("/features/features", "59 rows"), ("info", "train", "predict", "bench", "verify", "upgrade"), V1),
    ("v1_fewer_ids", _dataset("ids", lambda v: v[:-2]), ("/ids", "rows"), ("info", "train", "verify", "extract"), V1),
    ("v1_width_disagrees_with_taps", _taps_width(2), ("/features/features", "'taps'"), ("info", "train", "verify"), V1),
    ("v1_intact", _as_written, ("schema-1", "embedkit store upgrade"), ("info", "train", "bench", "predict", "audit", "split", "verify", "compact", "pack", "extract"), V1),  # only upgrade reads it
    ("v1_label_beyond_names", _set_row("labels", 0, 3), ("/labels row 0",), ("upgrade",), V1),
    ("v1_duplicate_id", _set_row("ids", 4, "0"), ("/ids", "'0' twice"), ("upgrade",), V1),  # found in the copied shard, before the commit
    ("v1_split_missing", _dataset("split", lambda v: None), ("/split", "missing"), ("info", "verify"), V1),
    ("v1_label_names_missing", _dataset("label_names", lambda v: None), ("/label_names", "missing"), ("info", "train", "verify"), V1),
    ("v1_is_a_shard", _attr("format", "embedkit-shard"), ("a shard of a store",), ("info", "verify", "extract"), V1),
]
# fmt: on


def store_cases() -> list[Case]:
    cases = []
    files = {"x.npy": npy(GOOD_X)}
    for fault, setup, names, commands, seed in FAULTS:
        seeds = {"lab.h5": seed, "head": "head_logreg"}
        if fault in SWAPS:
            seeds |= {"short.h5": "short", "wide.h5": "wide", "twin.h5": "twin"}
        for command in commands:
            if command == "extract":  # the array model into a damaged copy of its own store
                seeds = {**seeds, "lab.h5": "array" if seed == V2 else "array_v1"}
            name = f"store_{fault}_{command}"
            cases.append(
                Case(name, COMMANDS[command], 2, ("lab.h5", *names), files, seeds, setup=setup)
            )
    return cases


def write_v1(store: Path, out: Path) -> Path:
    """A schema-1 (embedkit 0.1, one-file) copy of the v2 ``store``: same rows and attributes."""
    from embedkit.store import FeatureStore

    text = h5py.string_dtype("utf-8")
    with FeatureStore(store) as fs, h5py.File(store, "r") as index, h5py.File(out, "w") as f:
        f.create_dataset("ids", data=fs.ids().astype(object), dtype=text)
        f.create_dataset("digests", data=index["digests"][...])
        f.create_dataset("labels", data=index["labels"][...])
        f.create_dataset("label_names", data=np.asarray(fs.label_names, dtype=object), dtype=text)
        f.create_dataset("split", data=index["split"][...])
        for tap in fs.taps:
            f.create_dataset(f"features/{tap}", data=fs.features(tap))
        for name in ("ids", "digests", "reasons"):
            f.create_dataset(
                f"bad/{name}", data=index[f"bad/{name}"][...], dtype=index[f"bad/{name}"].dtype
            )
        f.attrs.update({k: v for k, v in index.attrs.items()})
        f.attrs["schema_version"] = 1
    return out
