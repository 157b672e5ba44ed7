"""The battery's integrity cases: a flipped byte anywhere, a repair, a moved store, bad/.

``store verify`` must name the shard, column file or index whose bytes changed (exit 2)
and write nothing; ``store verify --repair`` restores a damaged index from its copy; a
store moved together with its folder verifies; an item recorded under ``bad/`` that
later succeeds loses its record.
"""

# ruff: noqa: E501 - the tables read best one case per line
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tests.reliability.cases_images import GOOD_IMAGES, GOOD_X, npy
from tests.reliability.harness import Case

S = "{d}/lab.h5"
FRACTIONS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)  # where in the file the byte is flipped


def _one(folder: Path, sub: str) -> Path:
    (path,) = sorted((folder / "lab.h5.d" / sub).iterdir())
    return path


def _newest_version(folder: Path) -> Path:
    return sorted((folder / "lab.h5.d" / "versions").iterdir())[-1]


TARGETS = {
    "shard": lambda d: _one(d, "shards"),
    "column": lambda d: _one(d, "columns"),
    "index": lambda d: d / "lab.h5",
    "version": _newest_version,
}


def _flip(target, fraction: float):
    def setup(folder: Path, assets) -> None:
        path = TARGETS[target](folder)
        data = bytearray(path.read_bytes())
        offset = min(len(data) - 1, int(fraction * len(data)))
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))

    return setup


def _names(target: str, fraction: float):
    return {
        "shard": (".h5",),
        "column": (".h5",),
        "index": ("lab.h5",),
        "version": ("version",),
    }[target]


def _rows(folder: Path) -> dict:
    from embedkit.store import FeatureStore

    with FeatureStore(folder / "lab.h5") as fs:
        return {"X": fs.features(), "y": fs.labels(), "s": fs.splits().astype("S8")}


def _keep_rows_then(setup):
    def both(folder: Path, assets) -> None:
        np.savez(folder / "rows.npz", **_rows(folder))
        setup(folder, assets)

    return both


def _same_rows_and_verifies(folder: Path) -> None:
    from embedkit.store import verify_store

    assert verify_store(folder / "lab.h5") == []
    before, after = np.load(folder / "rows.npz"), _rows(folder)
    for key in ("X", "y", "s"):
        assert np.array_equal(before[key], after[key]), key


def _move(folder: Path, assets) -> None:
    (folder / "moved").mkdir()
    os.rename(folder / "lab.h5", folder / "moved" / "new.h5")
    os.rename(folder / "lab.h5.d", folder / "moved" / "new.h5.d")


def _bad_then_fixed(folder: Path, assets) -> None:
    from embedkit.extract import extract

    (folder / "imgs" / "c" / "broken.png").write_bytes(b"not a png")
    extract(assets["image"], folder / "imgs", folder / "img.h5", progress=False, skip_bad=True)
    (folder / "imgs" / "c" / "broken.png").write_bytes(next(iter(GOOD_IMAGES.values())))


def _no_bad_left(folder: Path) -> None:
    from embedkit.store import FeatureStore, store_summary

    assert store_summary(folder / "img.h5")["bad_items"] == 0
    with FeatureStore(folder / "img.h5") as fs:
        assert "c/broken.png" in fs.ids().tolist()


def integrity_cases() -> list[Case]:
    cases = []
    for target in TARGETS:
        for fraction in FRACTIONS:
            cases.append(
                Case(
                    f"flip_{target}_{int(fraction * 100)}pct_verify",
                    ("store", "verify", S),
                    2,
                    _names(target, fraction),
                    seeds={"lab.h5": "lab"},
                    setup=_flip(target, fraction),
                )
            )
    for target in ("index", "version"):
        for fraction in (0.3, 0.9):
            cases.append(
                Case(
                    f"flip_{target}_{int(fraction * 100)}pct_repair",
                    ("store", "verify", S, "--repair"),
                    0,
                    seeds={"lab.h5": "lab"},
                    setup=_keep_rows_then(_flip(target, fraction)),
                    check=_same_rows_and_verifies,
                )
            )
    for command in (
        ("split", S, "--force"),
        ("extract", "{array}", "{d}/x.npy", "--out", S, "--quiet"),
    ):
        cases.append(
            Case(
                f"flip_index_then_{command[0]}",
                command,
                2,
                ("lab.h5",),
                files={"x.npy": npy(GOOD_X)},
                seeds={"lab.h5": "array" if command[0] == "extract" else "lab"},
                setup=_flip("index", 0.5),
            )
        )
    cases += [
        Case(
            "moved_store_verifies",
            ("store", "verify", "{d}/moved/new.h5"),
            0,
            seeds={"lab.h5": "lab"},
            setup=_move,
        ),
        Case(
            "bad_record_dropped_once_fixed",
            ("extract", "{image}", "{d}/imgs", "--out", "{d}/img.h5", "--quiet", "--skip-bad"),
            0,
            files=dict(GOOD_IMAGES),
            setup=_bad_then_fixed,
            check=_no_bad_left,
        ),
    ]
    return cases
