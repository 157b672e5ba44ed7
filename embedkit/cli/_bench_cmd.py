"""``embedkit bench`` and ``embedkit bench-build``: compare heads on one store.

embedkit bench feats.h5 --heads sgd,logreg,linear,mlp,knn,centroid \\
    --shots 1,2,4,8,16,all --seeds 5 --out bench/
embedkit bench feats.h5 --protocol cv --folds 5 --shots all --out bench-cv/
embedkit bench feats.h5 --taps all --out bench-taps/     # every tap: which layer, which head
embedkit bench feats.h5 --taps blocks.14,pool,blocks.14+pool --out bench-join/
embedkit bench feats.h5 --labelling --out bench-labelling/   # which strategy + head to label with
embedkit bench-build bench/      # re-aggregate runs/*.json into CSV, Markdown and plots
"""

from __future__ import annotations

from pathlib import Path

from embedkit.cli import options
from embedkit.cli._args import folds, fraction, fraction_or_zero, jobs, seeds
from embedkit.cli._outputs import BENCH_FOLDER, add_overwrite, guard_output
from embedkit.errors import UserInputError
from embedkit.heads.registry import BENCH_DEFAULT_HEADS, TAP_SWEEP_HEADS

_DEFAULT_HEADS = ",".join(BENCH_DEFAULT_HEADS)
_SWEEP_HEADS = ",".join(TAP_SWEEP_HEADS)
_DEFAULT_SHOTS = "1,2,4,8,16,all"


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="compare heads on one store: k-shot curves or cross-validation, with intervals",
        description="Fit every head at every shot level and seed, one JSON record per run in "
        "OUT/runs/ (a re-run skips runs already done), then write OUT/results.csv, "
        "OUT/results.md and PNG plots. Intervals are 95% Student-t over seeds.",
    )
    # fmt: off
    p.add_argument("store", help="the labelled .h5 feature store")
    p.add_argument("--out", required=True, help="results directory (created; resumable)")
    p.add_argument("--heads",
                   help=f"comma list (default {_DEFAULT_HEADS}; with --taps/--tap: {_SWEEP_HEADS})")
    p.add_argument("--shots", default=_DEFAULT_SHOTS,
                   help=f"rows per class, or all (default {_DEFAULT_SHOTS})")
    p.add_argument("--seeds", type=seeds, default=5,
                   help="seeds per setting (default 5, at most 1000)")
    p.add_argument("--taps", action="append", metavar="SETS",
                   help="tap sets to compare: all (every tap, shallow to deep), a,b,c, or a+b "
                   "(taps joined: each standardised, scaled by 1/sqrt(width), concatenated), "
                   "joined (every tap joined); repeatable; default: the store's default tap")
    p.add_argument("--tap", action="append", dest="taps", metavar="SET",
                   help="one tap set (a or a+b); repeat to compare several (same as --taps a,b)")
    p.add_argument("--val", type=fraction_or_zero, default=0.2,
                   help="at the largest shot level, score every (tap, head) pair by a repeated "
                   "stratified cross-validation of the training rows with 1/VAL folds (seed s "
                   "holds out fold s mod 1/VAL): picks the recommended pair without the test "
                   "split (default 0.2: 5 folds; 0: no recommendation)")
    p.add_argument("--protocol", choices=("kshot", "cv"), default="kshot",
                   help="kshot: score on the fixed test split; cv: stratified k-fold "
                   "(default kshot)")
    p.add_argument("--folds", type=folds, default=5,
                   help="folds for --protocol cv (default 5, 2 to 100)")
    p.add_argument("--sweep", action="store_true",
                   help="tune each head (C, alpha, weight decay, lr, k) on a validation part "
                   "of its own training rows, never the test split")
    p.add_argument("--exclude", metavar="IDS_FILE",
                   help="ids to leave out of training (one a line, or a CSV with an id column, "
                   "e.g. audit's suspects.csv); the test split is unchanged; see "
                   "docs/splits.md for the scores it changes")
    p.add_argument("--allow-fewer", action="store_true",
                   help="a class with fewer rows than --shots trains on all it has instead of "
                   "failing")
    p.add_argument("--make-test-split", type=fraction, metavar="FRACTION",
                   help="hold out this fraction as the test split in memory (when the store "
                   "has none)")
    p.add_argument("--jobs", type=jobs,
                   help="worker processes (default: all cores; 1 = none; at most 1024)")
    p.add_argument("--labelling", action="store_true",
                   help="simulate the labelling loop instead: hide the train labels, select -> "
                   "reveal -> fit -> test per strategy x budget x seed (heads default "
                   "logreg,spread)")
    p.add_argument("--strategies", default="random,typical,coverage,hybrid",
                   help="--labelling: selection strategies (default random,typical,coverage,"
                   "hybrid)")
    p.add_argument("--budgets", default="1,2,5,10,20",
                   help="--labelling: labels per class after each round (default 1,2,5,10,20)")
    p.add_argument("--quiet", action="store_true", help="no progress (n of N runs, ETA)")
    # fmt: on
    add_overwrite(p)
    p.set_defaults(func=run_bench_cmd)

    p = sub.add_parser(
        "bench-build", help="aggregate a bench's runs/*.json into results.csv, results.md and plots"
    )
    p.add_argument("results", help="the --out directory of `embedkit bench`")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run_build_cmd)


def run_bench_cmd(args) -> int:
    from embedkit.bench import BenchSpec, run_bench

    guard_output(
        args.out, BENCH_FOLDER, overwrite=args.overwrite, inputs=[args.store, args.exclude]
    )
    if args.labelling:
        return run_labelling_cmd(args)
    heads = args.heads or (_SWEEP_HEADS if args.taps else _DEFAULT_HEADS)
    spec = BenchSpec(
        **options(args, BenchSpec) | {"heads": heads, "taps": args.taps and tuple(args.taps)}
    )
    table = run_bench(
        args.store,
        out=args.out,
        spec=spec,
        exclude=args.exclude,
        make_test_split=args.make_test_split,
        progress=not args.quiet,
    )
    print(table.summary())
    out = Path(args.out)
    print(f"wrote {out / 'results.md'}, {out / 'results.csv'} and plots; runs in {out / 'runs'}")
    return 0


def run_labelling_cmd(args) -> int:
    from embedkit.bench.labelling import LabellingSpec, labelling_markdown, run_labelling

    given = {k: v for k, v in options(args, LabellingSpec).items() if v is not None}
    spec = LabellingSpec(**given)  # no --heads: the spec's own, logreg and spread
    taps = args.taps or [None]
    if len(taps) > 1:
        raise UserInputError("--labelling runs on one tap; give at most one --tap")
    summary = run_labelling(args.store, args.out, spec, tap=taps[0], progress=not args.quiet)
    print(labelling_markdown(summary), end="")
    out = Path(args.out)
    print(f"wrote {out / 'labelling.md'}, .csv, .json and .png; runs in {out / 'runs'}")
    return 0


def run_build_cmd(args) -> int:
    from embedkit.bench import build_report

    print(build_report(args.results, plots=not args.no_plots).summary())
    print(f"wrote {Path(args.results) / 'results.md'} and {Path(args.results) / 'results.csv'}")
    return 0
