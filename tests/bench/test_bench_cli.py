"""`embedkit bench` on bad input: one-line errors that say what to do, exit code 2."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.cli import main
from tests.helpers import cli, run_cli

ARGS = ["--heads", "centroid", "--seeds", "2", "--jobs", "1", "--quiet"]


def _store(path, X, y=None, splits=None, names=None):
    from embedkit.rows import from_arrays

    from_arrays(path, X, y, splits=splits, label_names=names).close()
    return str(path)


def _bench(capsys, *args):
    code = main(["bench", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_more_shots_than_a_class_has_names_the_class(bench_store, bench_arrays, tmp_path, capsys):
    _, y, splits = bench_arrays
    counts = np.bincount(y[splits == "train"])
    smallest = ["ant", "bee", "cat", "dog"][counts.argmin()]
    code, _, err = _bench(
        capsys, str(bench_store), "--shots", "2,50", "--out", str(tmp_path / "b"), *ARGS
    )
    assert code == 2
    assert f"--shots 50 asks for more rows than class {smallest!r}" in err
    assert f"({counts.min()})" in err and "--allow-fewer" in err
    assert "Traceback" not in err
    assert not (tmp_path / "b" / "runs").exists()
    code, out, _ = _bench(
        capsys,
        str(bench_store),
        "--shots",
        "50",
        "--allow-fewer",
        "--out",
        str(tmp_path / "b"),
        *ARGS,
    )
    assert code == 0 and "+ head centroid" in out


def test_store_without_a_test_split_says_how_to_add_one(bench_arrays, tmp_path, capsys):
    X, y, _ = bench_arrays
    store = _store(tmp_path / "nosplit.h5", X, y)
    code, _, err = _bench(capsys, store, "--shots", "2", "--out", str(tmp_path / "o"), *ARGS)
    assert code == 2 and f"embedkit split {store} --test 0.2" in err and "--make-test-split" in err
    code, out, _ = _bench(
        capsys, store, "--shots", "2", "--make-test-split", "0.25", "--out", str(tmp_path / "o"),
        *ARGS,
    )  # fmt: skip
    assert code == 0 and "+ head centroid" in out


def test_store_without_labels_says_so(bench_arrays, tmp_path, capsys):
    X, _, _ = bench_arrays
    store = _store(tmp_path / "nolabels.h5", X)
    code, _, err = _bench(capsys, store, "--out", str(tmp_path / "o"), *ARGS)
    assert code == 2 and "has no labels" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--heads", "logreg,resnet"], "unknown head 'resnet'"),
        (["--shots", "1,three"], "--shots item 'three'"),
        (["--tap", "pool"], "--taps 'pool' is not a tap of"),
        (["--taps", "features+nope"], "--taps 'nope' is not a tap of"),
        (["--exclude", "missing.txt"], "exclude file"),
        (["--protocol", "cv", "--folds", "99"], "--folds 99"),
    ],
)
def test_bad_arguments_give_one_line_errors(bench_store, tmp_path, capsys, args, message):
    code, _, err = _bench(capsys, str(bench_store), "--out", str(tmp_path / "b"), *ARGS, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_val_out_of_range_is_a_one_line_argument_error(bench_store, tmp_path, capfd):
    result = cli(capfd, "bench", str(bench_store), "--val", "1.5", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "argument --val: 1.5 is not a fraction in [0, 1)" in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_missing_store_and_the_build_step_from_a_real_process(bench_store, tmp_path, capsys):
    result = run_cli("bench", str(tmp_path / "none.h5"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "none.h5" in result.stderr
    result = run_cli("bench-build", str(tmp_path))
    assert result.returncode == 2 and "no run records" in result.stderr
    code, out, err = _bench(capsys, str(bench_store), "--shots", "1,all", "--out",
                            str(tmp_path / "o"), *ARGS)  # fmt: skip
    assert code == 0, err
    assert "runs run, 0 already done, 0 failed" in out
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "accuracy_vs_fit_time.png", "accuracy_vs_shots.png", "results.csv", "results.md", "runs",
    ]  # fmt: skip
    assert np.isfinite(
        float((tmp_path / "o" / "results.csv").read_text().split("\n")[1].split(",")[6])
    )
