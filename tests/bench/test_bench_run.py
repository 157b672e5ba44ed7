"""A bench end to end on a real store: records, resume, failures, outputs, cv, workers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from embedkit.bench import build_report, run_bench
from embedkit.errors import UserInputError

SMALL = {"heads": "logreg,centroid", "shots": "2,all", "seeds": 2, "jobs": 1}


def _records(out):
    return {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}


def test_rerun_skips_done_runs_and_resumes_an_interrupted_bench(bench_store, tmp_path):
    out = tmp_path / "out"
    table = run_bench(bench_store, out=out, plots=False, **SMALL)
    first = _records(out)
    assert table.info["runs_run"] == 8 and len(first) == 8
    again = run_bench(bench_store, out=out, plots=False, **SMALL)
    assert again.info == {**again.info, "runs_run": 0, "runs_skipped": 8}
    assert _records(out) == first, "a re-run must not run (and rewrite) a record again"
    # an interrupted bench: two records missing, a half-written temporary file left behind
    (out / "runs" / "features__logreg__all__s1.json").unlink()
    (out / "runs" / "features__centroid__k2__s0.json").unlink()
    (out / "runs" / ".features__logreg__all__s1.abc.tmp").write_text('{"trunc')
    resumed = run_bench(bench_store, out=out, plots=False, **SMALL)
    assert resumed.info["runs_run"] == 2 and resumed.info["runs_skipped"] == 6
    after = _records(out)
    assert set(after) == set(first)
    changed = {name for name in first if after[name] != first[name]}
    assert changed <= {"features__logreg__all__s1.json", "features__centroid__k2__s0.json"}
    assert [r["accuracy_mean"] for r in resumed.rows] == [r["accuracy_mean"] for r in table.rows]


def test_seeds_of_a_deterministic_head_share_the_fit_on_all_rows(bench_store, tmp_path):
    spec = {"heads": "knn,sgd", "shots": "all", "seeds": 3, "jobs": 1}
    run_bench(bench_store, out=tmp_path / "shared", plots=False, **spec)
    records = {r.stem: json.loads(r.read_text()) for r in (tmp_path / "shared/runs").glob("*")}
    knn = [records[f"features__knn__all__s{s}"] for s in range(3)]
    assert knn[0]["fit_shared_with"] is None
    for r in knn[1:]:
        assert r["fit_shared_with"] == "features__knn__all__s0"
        assert r["metrics"] == knn[0]["metrics"] and r["fit_s"] == knn[0]["fit_s"]
    n_pool = knn[0]["config"]["n_train_pool"]
    assert all(r["val"]["n_fit"] < n_pool for r in knn)  # each seed's own validation fit
    sgd = [records[f"features__sgd__all__s{s}"] for s in range(3)]
    assert all(r["fit_shared_with"] is None for r in sgd)  # sgd's fit depends on its seed
    # the same scores as a bench that fits every seed on its own
    alone = run_bench(bench_store, out=tmp_path / "alone", plots=False, **{**spec, "seeds": 1})
    row = next(r for r in alone.rows if r["head"] == "knn")
    assert row["accuracy_mean"] == knn[2]["metrics"]["accuracy"]


def test_a_failing_head_is_recorded_and_the_bench_goes_on(bench_store, tmp_path):
    out = tmp_path / "out"
    bad = {"logreg": {"C": -1.0}}  # sklearn rejects C <= 0 at fit time
    table = run_bench(bench_store, out=out, head_params=bad, plots=False, **SMALL)
    record = json.loads((out / "runs" / "features__logreg__k2__s0.json").read_text())
    assert record["status"] == "failed" and "C" in record["error"]
    assert record["metrics"] == {}
    ok = json.loads((out / "runs" / "features__centroid__k2__s0.json").read_text())
    assert ok["status"] == "ok" and 0.0 <= ok["metrics"]["accuracy"] <= 1.0
    assert len(table.failures) == 4
    row = next(r for r in table.rows if r["head"] == "logreg" and r["shots"] == 2)
    assert row["n_failed"] == 2 and row["accuracy_mean"] is None
    assert "4 runs failed" in table.markdown()


def test_a_bench_whose_every_run_failed_raises_naming_the_first(bench_store, tmp_path):
    out = tmp_path / "out"
    spec = {**SMALL, "heads": "logreg"}
    with pytest.raises(
        UserInputError, match=r"all \d+ bench runs failed; the first, features__logreg.*C"
    ):
        run_bench(bench_store, out=out, head_params={"logreg": {"C": -1.0}}, plots=False, **spec)
    assert all(
        json.loads(p.read_text())["status"] == "failed" for p in (out / "runs").glob("*.json")
    )  # the records stay, for bench-build and a look at the errors


def test_runs_of_another_configuration_are_not_mixed(bench_store, tmp_path):
    out = tmp_path / "out"
    run_bench(bench_store, out=out, plots=False, **SMALL)
    with pytest.raises(UserInputError, match="sweep differs"):
        run_bench(bench_store, out=out, sweep=True, plots=False, **SMALL)


def test_outputs_exist_and_parse(bench_store, tmp_path):
    import matplotlib.image

    out = tmp_path / "out"
    run_bench(bench_store, out=out, **SMALL)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["tap"], r["head"], r["shots"]) for r in rows] == [
        ("features", "logreg", "2"), ("features", "logreg", "all"),
        ("features", "centroid", "2"), ("features", "centroid", "all"),
        ("", "majority", ""), ("", "stratified", ""),
    ]  # fmt: skip
    for r in rows[:4]:
        assert float(r["accuracy_lo"]) <= float(r["accuracy_mean"]) <= float(r["accuracy_hi"])
        assert int(r["n_runs"]) == 2 and int(r["n_failed"]) == 0
    md = (out / "results.md").read_text()
    assert "| head | 2 | all |" in md and "| logreg |" in md and "ECE" in md
    for name in ("accuracy_vs_shots.png", "accuracy_vs_fit_time.png"):
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 100
    # the build step runs alone and gives the same table
    (out / "results.csv").unlink()
    build_report(out, plots=False)
    assert list(csv.DictReader((out / "results.csv").open())) == rows


def test_build_without_runs_says_what_to_do(tmp_path):
    with pytest.raises(UserInputError, match="embedkit bench STORE"):
        build_report(tmp_path)


def test_cv_protocol_scores_held_out_folds(bench_store, tmp_path):
    table = run_bench(
        bench_store, out=tmp_path / "cv", heads="logreg", shots="all", seeds=2, protocol="cv",
        folds=3, jobs=1, plots=False,
    )  # fmt: skip
    records = [json.loads(p.read_text()) for p in (tmp_path / "cv" / "runs").glob("*.json")]
    assert sorted(r["run_id"] for r in records)[:3] == [
        "features__logreg__all__s0__f0", "features__logreg__all__s0__f1",
        "features__logreg__all__s0__f2",
    ]  # fmt: skip
    assert all(r["val"]["n_fit"] + r["val"]["n_val"] == r["n_train"] for r in records)
    assert len(records) == 6 and sum(r["n_eval"] for r in records) == 2 * 180  # the train pool
    assert table.rows[0]["n_runs"] == 6 and table.rows[0]["accuracy_mean"] > 0.5


def test_worker_processes_give_the_same_results(bench_store, tmp_path):
    few = {"heads": "centroid,logreg", "shots": "2", "seeds": 2}
    serial = run_bench(bench_store, out=tmp_path / "a", plots=False, jobs=1, **few)
    parallel = run_bench(bench_store, out=tmp_path / "b", plots=False, jobs=2, **few)
    assert len(serial.rows) == len(parallel.rows) == 2
    for a, b in zip(serial.rows, parallel.rows):
        assert a["accuracy_mean"] == pytest.approx(b["accuracy_mean"])
    record = json.loads((tmp_path / "b" / "runs" / "features__logreg__k2__s1.json").read_text())
    assert record["host"]["threads"] == max(1, record["host"]["cores"] // 2)


def test_exclude_leaves_rows_out_of_training_only(bench_store, tmp_path):
    from embedkit.bench import load_bench_data

    ids = tmp_path / "suspects.csv"
    ids.write_text("id,given_label\n1,ant\n2,bee\n4,cat\n")  # row 4 is a test row
    data = load_bench_data(bench_store, exclude=ids)
    full = load_bench_data(bench_store)
    assert set(full.train) - set(data.train) == {1, 2}
    np.testing.assert_array_equal(data.test, full.test)
    (tmp_path / "bad.txt").write_text("1\nnot-an-id\n")
    with pytest.raises(UserInputError, match="not-an-id"):
        load_bench_data(bench_store, exclude=tmp_path / "bad.txt")
