"""The battery's argument caps: every count, time and seed is range-checked at parse time.

No NaN, no negative or endless waits, seeds within numpy's range, counts under their
documented caps (docs/reliability.md, "Arguments"), so nothing runs for hours on a
typo; ``bench`` refuses joined taps for a head that reads one tap's feature maps, as
``train`` does. Each case must name the argument and leave the seed store unchanged.
"""

# ruff: noqa: E501 - the tables read best one case per line
from __future__ import annotations

from tests.reliability.harness import Case

S = "{d}/lab.h5"
BENCH = ("bench", S, "--out", "{d}/b", "--quiet", "--heads", "centroid")
TRAIN = ("train", S, "--head", "centroid", "--out", "{d}/h")
AUDIT = ("audit", S, "--out", "{d}/a")
PREDICT = ("predict", "{d}/head", S, "--out", "{d}/p.csv")
EXTRACT = ("extract", "{array}", "{d}/x.npy", "--out", "{d}/new.h5")
# (name, argv, the argument named)
CAPS = [
    ("bench_seeds_0", (*BENCH, "--seeds", "0"), "--seeds"),
    ("bench_seeds_huge", (*BENCH, "--seeds", "100000"), "--seeds"),
    ("bench_seeds_nan", (*BENCH, "--seeds", "nan"), "--seeds"),
    ("bench_folds_1", (*BENCH, "--protocol", "cv", "--folds", "1"), "--folds"),
    ("bench_folds_huge", (*BENCH, "--protocol", "cv", "--folds", "1000000"), "--folds"),
    ("bench_jobs_huge", (*BENCH, "--jobs", "100000"), "--jobs"),
    ("audit_folds_huge", (*AUDIT, "--folds", "5000"), "--folds"),
    ("audit_k_0", (*AUDIT, "--k", "0"), "--k"),
    ("audit_block_size_huge", (*AUDIT, "--block-size", "10000000"), "--block-size"),
    ("audit_seed_beyond_numpy", (*AUDIT, "--seed", str(2**32)), "--seed"),
    ("train_seed_beyond_numpy", (*TRAIN, "--seed", str(2**40)), "--seed"),
    ("train_seed_float", (*TRAIN, "--seed", "1.5"), "--seed"),
    ("split_seed_beyond_numpy", ("split", S, "--seed", "99999999999"), "--seed"),
    ("split_wait_nan", ("split", S, "--wait", "nan"), "--wait"),
    ("split_wait_negative", ("split", S, "--wait", "-1"), "--wait"),
    ("split_wait_inf", ("split", S, "--wait", "inf"), "--wait"),
    ("split_wait_a_year", ("split", S, "--wait", "31536000"), "--wait"),
    ("compact_wait_nan", ("store", "compact", S, "--wait", "nan"), "--wait"),
    ("verify_wait_negative", ("store", "verify", S, "--repair", "--wait", "-5"), "--wait"),
    ("pack_wait_text", ("store", "pack", S, "{d}/p.h5", "--wait", "soon"), "--wait"),
    ("predict_top_k_0", (*PREDICT, "--top-k", "0"), "--top-k"),
    ("predict_top_k_huge", (*PREDICT, "--top-k", "10000000"), "--top-k"),
    ("predict_batch_size_huge", (*PREDICT, "--batch-size", "100000000"), "--batch-size"),
    ("extract_batch_size_huge", (*EXTRACT, "--batch-size", "10000000"), "--batch-size"),
    ("extract_workers_huge", (*EXTRACT, "--workers", "100000"), "--workers"),
    (
        "export_max_length_0",
        ("export", "minilm", "--out", "{d}/m.onnx", "--max-length", "0"),
        "--max-length",
    ),
    (
        "bench_joined_taps_spatial_head",
        ("bench", S, "--out", "{d}/b", "--taps", "features+features", "--heads", "attnpool"),
        "attnpool",
    ),
    (
        "bench_joined_keyword_spatial_head",
        ("bench", S, "--out", "{d}/b", "--taps", "joined", "--heads", "centroid,attnpool"),
        "attnpool",
    ),
]


def caps_cases() -> list[Case]:
    return [
        Case(f"cap_{name}", argv, 2, (named,), seeds={"lab.h5": "lab", "head": "head_logreg"})
        for name, argv, named in CAPS
    ]
