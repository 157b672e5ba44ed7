"""The battery's argument cases: every range-checked option, refused at parse time in one line.

Each runs against a copy of the labelled seed store ``lab`` (conftest.py), which must come
out byte-identical, and must name the argument. ``--exclude`` files with unknown ids are
refused by ``train`` and ``bench`` alike; and stores that are not stores get one line.
"""

# ruff: noqa: E501 - the tables read best one case per line
from __future__ import annotations

from tests.reliability.harness import Case

S = "{d}/lab.h5"
BENCH = ("bench", S, "--out", "{d}/b", "--quiet", "--heads", "centroid", "--seeds", "1")
# (name, argv, words the error names)
ARGS = [
    (
        "train_split_val_above_1",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--split-val", "1.5"),
        ("--split-val",),
    ),
    (
        "train_split_val_1",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--split-val", "1"),
        ("--split-val",),
    ),
    (
        "train_split_val_negative",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--split-val", "-0.1"),
        ("--split-val",),
    ),
    (
        "train_split_val_text",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--split-val", "abc"),
        ("--split-val",),
    ),
    (
        "train_split_val_nan",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--split-val", "nan"),
        ("--split-val",),
    ),
    (
        "train_seed_negative",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--seed", "-1"),
        ("--seed",),
    ),
    (
        "train_seed_text",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--seed", "x"),
        ("--seed",),
    ),
    (
        "train_head_unknown",
        ("train", S, "--head", "resnet", "--out", "{d}/h"),
        ("--head", "resnet"),
    ),
    ("train_no_out", ("train", S, "--head", "centroid"), ("--out",)),
    ("train_no_store", ("train", "--head", "centroid", "--out", "{d}/h"), ("store",)),
    (
        "train_exclude_unknown",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--exclude", "{d}/ids.txt"),
        ("--exclude", "nope_1"),
    ),
    (
        "train_exclude_missing",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--exclude", "{d}/none.txt"),
        ("none.txt",),
    ),
    (
        "train_tap_unknown",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--tap", "nope"),
        ("nope",),
    ),
    ("bench_jobs_0", (*BENCH, "--jobs", "0"), ("--jobs",)),
    ("bench_jobs_negative", (*BENCH, "--jobs", "-2"), ("--jobs",)),
    ("bench_folds_1", (*BENCH, "--protocol", "cv", "--folds", "1"), ("--folds",)),
    ("bench_folds_text", (*BENCH, "--folds", "five"), ("--folds",)),
    ("bench_seeds_0", (*BENCH, "--seeds", "0"), ("--seeds",)),
    ("bench_make_test_split_1_5", (*BENCH, "--make-test-split", "1.5"), ("--make-test-split",)),
    ("bench_make_test_split_0", (*BENCH, "--make-test-split", "0"), ("--make-test-split",)),
    (
        "bench_heads_unknown",
        ("bench", S, "--out", "{d}/b", "--quiet", "--heads", "centroid,nope"),
        ("nope",),
    ),
    ("bench_protocol_unknown", (*BENCH, "--protocol", "loo"), ("--protocol",)),
    ("bench_exclude_unknown", (*BENCH, "--exclude", "{d}/ids.txt"), ("--exclude", "nope_1")),
    (
        "split_test_plus_val",
        ("split", S, "--test", "0.5", "--val", "0.6", "--force", "--retest"),
        ("--test", "--val"),
    ),
    ("split_test_1", ("split", S, "--test", "1", "--force"), ("--test",)),
    ("split_val_negative", ("split", S, "--val", "-0.1", "--force"), ("--val",)),
    ("split_test_text", ("split", S, "--test", "a fifth", "--force"), ("--test",)),
    ("split_seed_negative", ("split", S, "--seed", "-5", "--force"), ("--seed",)),
    ("split_already_set", ("split", S), ("already marked train/val", "--force")),
    (
        "extract_batch_size_0",
        ("extract", "{array}", "{d}/x.npy", "--out", "{d}/o.h5", "--batch-size", "0"),
        ("--batch-size",),
    ),
    (
        "extract_workers_0",
        ("extract", "{array}", "{d}/x.npy", "--out", "{d}/o.h5", "--workers", "0"),
        ("--workers",),
    ),
    (
        "extract_limit_0",
        ("extract", "{array}", "{d}/x.npy", "--out", "{d}/o.h5", "--limit", "0"),
        ("--limit",),
    ),
    (
        "extract_limit_negative",
        ("extract", "{array}", "{d}/x.npy", "--out", "{d}/o.h5", "--limit", "-3"),
        ("--limit",),
    ),
    (
        "extract_device_unknown",
        ("extract", "{array}", "{d}/x.npy", "--out", "{d}/o.h5", "--device", "tpu"),
        ("--device",),
    ),
    (
        "extract_dtype_unknown",
        ("extract", "{array}", "{d}/x.npy", "--out", "{d}/o.h5", "--dtype", "float8"),
        ("--dtype",),
    ),
    ("predict_top_k_0", ("predict", "{d}/h", S, "--top-k", "0"), ("--top-k",)),
    ("predict_batch_size_0", ("predict", "{d}/h", S, "--batch-size", "0"), ("--batch-size",)),
    ("audit_folds_1", ("audit", S, "--out", "{d}/a", "--folds", "1"), ("--folds",)),
    ("audit_k_0", ("audit", S, "--out", "{d}/a", "--k", "0"), ("--k",)),
    (
        "audit_dup_threshold_2",
        ("audit", S, "--out", "{d}/a", "--dup-threshold", "2"),
        ("--dup-threshold",),
    ),
    ("audit_block_size_0", ("audit", S, "--out", "{d}/a", "--block-size", "0"), ("--block-size",)),
    ("audit_top_k_0", ("audit", S, "--out", "{d}/a", "--top-k", "0"), ("--top-k",)),
    ("audit_rank_by_unknown", ("audit", S, "--out", "{d}/a", "--rank-by", "loss"), ("--rank-by",)),
    (
        "export_max_length_0",
        ("export", "minilm", "--out", "{d}/m.onnx", "--max-length", "0"),
        ("--max-length",),
    ),
    ("unknown_command", ("fit", S), ("fit",)),
    ("unknown_option", ("info", S, "--colour"), ("--colour",)),
    ("info_missing_store", ("info",), ("store",)),
    ("info_store_missing_file", ("info", "{d}/none.h5"), ("none.h5",)),
    ("info_store_text_file", ("info", "{d}/ids.txt"), ("ids.txt",)),
    (
        "info_store_folder",
        ("info", "{d}"),
        (),
    ),
    ("info_store_empty_file", ("info", "{d}/empty.h5"), ("empty.h5",)),
]


def arg_cases() -> list[Case]:
    files = {"ids.txt": "0\nnope_1\n", "x.npy": b"", "empty.h5": b""}
    return [
        Case(f"arg_{name}", argv, 2, names, files, {"lab.h5": "lab"}) for name, argv, names in ARGS
    ]
