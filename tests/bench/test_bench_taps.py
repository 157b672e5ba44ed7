"""`embedkit bench --taps`: tap sets x heads in one command, picked on validation rows,
with the majority/stratified baselines, resumable by tap, on real stores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.bench import build_report, run_bench
from embedkit.bench.data import load_bench_sets
from embedkit.heads.tapsets import TapJoin
from embedkit.rows import from_arrays
from embedkit.store import FeatureStore
from tests.bench.conftest import MARK
from tests.helpers import cli

HEADS = "logreg,centroid"


@pytest.fixture
def layered_store(tmp_path):
    """Three taps: ``final`` (default, informative), ``early`` (noise), ``mid`` (informative).

    Classes are 75/25, so the noise tap at few shots falls under the majority baseline.
    """
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.25).astype(int)
    final = rng.normal(size=(n, 6)).astype(np.float32) + 1.5 * y[:, None]
    mid = rng.normal(size=(n, 3)).astype(np.float32) + 1.0 * y[:, None]
    early = rng.normal(size=(n, 5)).astype(np.float32)
    splits = np.where(np.arange(n) % 4 == 0, "test", "train")
    path = tmp_path / "layers.h5"
    from_arrays(path, {"final": final, "early": early, "mid": mid}, y,
                             splits=splits).close()  # fmt: skip
    return path, y, splits


def test_all_taps_one_command_records_keyed_by_tap_and_resumable(layered_store, tmp_path):
    path, y, splits = layered_store
    out = tmp_path / "b"
    table = run_bench(path, out=out, heads=HEADS, shots="2,all", seeds=2, taps="all,mid+final",
                      jobs=1)  # fmt: skip
    assert table.taps == ["early", "mid", "final", "mid+final"]  # depth order, then the join
    names = sorted(p.stem for p in (out / "runs").glob("*.json"))
    assert len(names) == 4 * 2 * 2 * 2 and "mid+final__logreg__all__s1" in names
    again = run_bench(path, out=out, heads=HEADS, shots="2,all", seeds=2, taps="all,mid+final",
                      jobs=1)  # fmt: skip
    assert again.info["runs_run"] == 0 and again.info["runs_skipped"] == 32
    other = run_bench(path, out=tmp_path / "c", heads=HEADS, shots="2,all", seeds=2, taps="mid",
                      jobs=1)  # fmt: skip
    mid = {(r["head"], r["shots"]): r["accuracy_mean"] for r in other.rows}
    assert {
        (r["head"], r["shots"]): r["accuracy_mean"] for r in table.rows if r["tap"] == "mid"
    } == mid
    assert sorted(p.name for p in out.glob("*.png")) == [
        "accuracy_vs_depth.png", "accuracy_vs_fit_time.png", "accuracy_vs_shots.png"]  # fmt: skip


def test_pick_is_within_noise_of_the_best_cv_score_and_never_sees_test(layered_store, tmp_path):
    path, y, splits = layered_store
    out = tmp_path / "b"
    table = run_bench(path, out=out, heads=HEADS, shots="4,all", seeds=3, taps="all", val=0.25,
                      jobs=1)  # fmt: skip
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    val = {}
    for r in records:
        if r["shots"] == "all":
            assert r["val"]["n_fit"] + r["val"]["n_val"] == r["n_train"]
            assert abs(r["val"]["n_val"] - 0.25 * r["n_train"]) <= 2  # per class, rounded
            val.setdefault((r["tap"], r["head"]), {})[r["seed"]] = r["val"]["accuracy"]
        else:
            assert r["val"] is None  # validation only at the largest shot level
    val = {k: [v[s] for s in sorted(v)] for k, v in val.items()}  # per seed, paired
    best = max(val, key=lambda k: np.mean(val[k]))
    rec = table.recommended
    key = (rec["tap"], rec["head"])
    assert rec["tap"] != "early" and rec["val_accuracy_mean"] == pytest.approx(np.mean(val[key]))
    # the one-standard-error rule on paired differences: the pick is within noise of the
    # best cross-validation mean, and no more taps than the best pair
    diff = np.array(val[best]) - np.array(val[key])
    assert diff.mean() <= diff.std(ddof=1) / np.sqrt(len(diff)) + 1e-12 or key == best
    assert len(rec["tap"].split("+")) <= len(best[0].split("+"))
    md = (out / "results.md").read_text()
    assert f"**Recommended: tap `{rec['tap']}`, head `{rec['head']}`**" in md
    assert "Best tap per head" in md and "| *majority* |" in md and "| *stratified* |" in md


def test_validation_fits_see_training_rows_only(layered_store, tmp_path, recorded):
    path, y, splits = layered_store
    X = np.arange(len(y), dtype=np.float32)[:, None] / MARK * np.ones((1, 2), np.float32)
    store = tmp_path / "marked.h5"  # column 0 holds the row marker (what the recorder logs)
    from_arrays(store, X, y, splits=splits).close()
    run_bench(store, out=tmp_path / "b", heads="centroid", shots="all", seeds=1, val=0.2, jobs=1)
    fits = [rows for _, kind, rows in recorded if kind == "fit"]
    train = set(np.flatnonzero(splits != "test"))
    assert len(fits) == 2 and all(set(rows) <= train for rows in fits)
    small, full = sorted(fits, key=len)
    assert set(small) < set(full) == train and len(small) == len(train) - round(0.2 * len(train))


def test_baselines_are_in_every_table_and_marks_under_majority(layered_store, tmp_path):
    path, y, splits = layered_store
    table = run_bench(path, out=tmp_path / "b", heads="centroid", shots="1,all", seeds=3,
                      taps="early,final", jobs=1)  # fmt: skip
    pool, test = y[splits != "test"], y[splits == "test"]
    majority = float(np.mean(test == np.bincount(pool).argmax()))
    stratified = float(np.bincount(pool, minlength=2) / len(pool) @ (np.bincount(test) / len(test)))
    assert table.info["baselines"] == pytest.approx(
        {"majority": majority, "stratified": stratified}
    )
    under = [r for r in table.rows if r["accuracy_mean"] < majority]
    assert under and all(table.below_majority(r) for r in under)
    md = build_report(tmp_path / "b").markdown()
    row = next(line for line in md.splitlines() if line.startswith("| centroid | ") and "▼" in line)
    assert row.count("▼") >= 1
    csv_rows = (tmp_path / "b" / "results.csv").read_text().splitlines()
    assert any(line.startswith(",majority,,") for line in csv_rows)


def test_joined_taps_are_standardised_with_pool_statistics_only(layered_store):
    path, y, splits = layered_store
    (data,) = load_bench_sets(path, taps="mid+final")
    with FeatureStore(path) as fs:
        parts = [fs.features(t) for t in ("mid", "final")]
    pool = np.flatnonzero(splits != "test")
    expected = TapJoin.fit(("mid", "final"), [p[pool] for p in parts]).transform(parts)
    assert data.source["tap"] == "mid+final" and np.allclose(data.X, expected)


def test_joined_is_every_tap_joined_in_depth_order(layered_store, tmp_path):
    path = layered_store[0]
    sets = load_bench_sets(path, taps="joined,mid+early")
    assert [d.source["tap"] for d in sets] == ["early+mid+final", "mid+early"]
    assert sets[0].X.shape[1] == 5 + 3 + 6
    table = run_bench(path, out=tmp_path / "j", taps="all,joined", heads="logreg",
                      shots="all", seeds=2, jobs=1, plots=False)  # fmt: skip
    assert table.taps == ["early", "mid", "final", "early+mid+final"]


def test_cli_taps_and_repeated_tap_agree(layered_store, tmp_path, capsys):
    path = layered_store[0]
    common = ["--heads", "centroid", "--shots", "all", "--seeds", "2", "--jobs", "1", "--quiet"]
    a = cli(capsys, "bench", path, "--taps", "early,final", "--out", tmp_path / "a", *common)
    b = cli(capsys, "bench", path, "--tap", "early", "--tap", "final", "--out", tmp_path / "b",
            *common)  # fmt: skip
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert (
        "recommended: tap final + head centroid" in a.stdout and "baselines: majority" in a.stdout
    )
    assert sorted(p.name for p in (tmp_path / "a" / "runs").iterdir()) == sorted(
        p.name for p in (tmp_path / "b" / "runs").iterdir()
    )
