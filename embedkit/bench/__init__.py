"""Compare heads on one feature store: k-shot curves, cross-validation, intervals, plots.

    embedkit bench stores/fmnist-lite0.h5 --shots 1,2,4,8,16,all --seeds 5 --out bench/
    embedkit bench-build bench/

>>> from embedkit.bench import run_bench
>>> table = run_bench("f.h5", heads="logreg,knn", shots="1,16,all", out="bench/")  # doctest: +SKIP
"""

from embedkit.bench.data import BenchData, load_bench_data
from embedkit.bench.metrics import expected_calibration_error, t_interval
from embedkit.bench.report import BenchTable, build_report
from embedkit.bench.runner import BenchSpec, run_bench

__all__ = ["BenchData", "BenchSpec", "BenchTable", "build_report", "expected_calibration_error",
           "load_bench_data", "run_bench", "t_interval"]  # fmt: skip
