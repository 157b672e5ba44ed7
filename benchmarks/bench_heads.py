"""Heads side by side on the same cached features: fit time and held-out accuracy.

Reproduces a by-hand measurement of heads on cached features: 50,000 x 768 float32 Gaussian-blob
features (10 classes, 2 clusters per class, 32 informative dims), 10,000 held-out rows;
references are scikit-learn ``LogisticRegression(lbfgs)`` and the naive torch linear
loop (Adam, 20 epochs, batch 256, no DataLoader). Then the 16-shot-per-class setting
(median over seeds). One record per run in results/heads.jsonl (``_harness.py``).

    .venv/bin/python benchmarks/bench_heads.py            # ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_heads.py --quick    # 20,000 rows, 3 seeds
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _harness import Records, measured_line


def make_features(n_train: int, n_test: int, seed: int = 0):
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_train + n_test,
        n_features=768,
        n_informative=32,
        n_redundant=0,
        n_classes=10,
        n_clusters_per_class=2,
        class_sep=3.0,
        random_state=seed,
    )
    X = X.astype(np.float32)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def naive_torch_linear(X, y, seed: int = 0, epochs: int = 20, batch: int = 256):
    """The by-hand baseline: Adam, a fixed 20 epochs of batch 256, index tensors directly."""
    import torch

    torch.manual_seed(seed)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    model = torch.nn.Linear(X.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(X)).split(batch):
            loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    class Fitted:
        def score(self, Xq, yq):
            with torch.no_grad():
                return float((model(torch.tensor(Xq)).argmax(1).numpy() == yq).mean())

    return Fitted()


def candidates(with_svm: bool):
    from sklearn.linear_model import LogisticRegression

    from embedkit.heads import make_head

    heads = {
        "sklearn LogisticRegression (reference)": lambda s: LogisticRegression(max_iter=1000),
        "naive torch linear (reference)": None,
        "embedkit linear (defaults)": lambda s: make_head("linear", random_state=s),
        "embedkit mlp (defaults)": lambda s: make_head("mlp", random_state=s),
        "embedkit sgd log_loss": lambda s: make_head("sgd", random_state=s),
        "embedkit sgd hinge": lambda s: make_head("sgd", loss="hinge", random_state=s),
        "embedkit ridge": lambda s: make_head("ridge", random_state=s),
        "embedkit logreg": lambda s: make_head("logreg", random_state=s),
        "embedkit centroid": lambda s: make_head("centroid", random_state=s),
        "embedkit knn": lambda s: make_head("knn", random_state=s),
    }
    if with_svm:
        heads["embedkit svm"] = lambda s: make_head("svm", random_state=s)
    return heads


def fit_one(name, factory, X, y, Xte, yte, seed):
    start = time.perf_counter()
    model = naive_torch_linear(X, y, seed) if factory is None else factory(seed).fit(X, y)
    seconds = time.perf_counter() - start
    return seconds, model.score(Xte, yte), model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows and 3 seeds")
    parser.add_argument("--svm", action="store_true", help="also LinearSVC (~1 min)")
    parser.add_argument("--repeat", type=int, default=3, help="fits per head, median time")
    args = parser.parse_args(argv)
    import torch

    n_train = 20_000 if args.quick else 50_000
    seeds = range(3 if args.quick else 5)
    X, y, Xte, yte = make_features(n_train, 10_000)
    heads = candidates(args.svm)
    torch.set_num_threads(1)  # the naive loop gets the thread count the heads pick
    times: dict[str, list[float]] = {name: [] for name in heads}
    full = {}
    for round_ in range(args.repeat):  # round-robin, so load changes hit every head alike
        for name, factory in heads.items():
            seconds, acc, model = fit_one(name, factory, X, y, Xte, yte, 0)
            times[name].append(seconds)
            history = getattr(model, "history_", [])
            epochs = len(history) or int(np.max(getattr(model, "n_iter_", 0)))
            full[name] = (statistics.median(times[name]), acc, epochs)
            print(
                f"round {round_} {name:42s} fit {seconds:7.2f}s  accuracy {acc:.4f}  "
                f"epochs {epochs}",
                flush=True,
            )
    shots = {}
    for name, factory in heads.items():
        accs = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            rows = np.concatenate(
                [rng.choice(np.flatnonzero(y == c), 16, replace=False) for c in range(10)]
            )
            accs.append(fit_one(name, factory, X[rows], y[rows], Xte, yte, seed)[1])
        shots[name] = statistics.median(accs)
        print(f"{name:42s} 16-shot median accuracy {shots[name]:.4f}", flush=True)
    records = Records("heads")
    key = {"n_train": n_train, "seeds": len(seeds), "repeat": args.repeat, "svm": args.svm}
    old = "results/heads.md" if vars(args) == vars(parser.parse_args([])) else None
    records.add(key, {"full": full, "shots": shots, "supersedes": old})
    print(records.section(render))
    return 0


def render(records: list[dict]) -> str:
    """Every run's tables (run_all.py --render calls this)."""
    return "\n".join(report(r) for r in records)


def report(record: dict) -> str:
    full, shots = record["full"], record["shots"]
    n_train, n_seeds, repeat = (record["key"][k] for k in ("n_train", "seeds", "repeat"))
    ref_s, ref_acc, _ = full["sklearn LogisticRegression (reference)"]
    naive_s = full["naive torch linear (reference)"][0]
    lines = [
        f"### Run of {record['created'][:10]}",
        "",
        f"{n_train:,} x 768 float32 Gaussian-blob features (`make_classification`, 10 classes, "
        "2 clusters/class, 32 informative dims), 10,000 held-out rows. One run: every head "
        f"fitted {repeat} times round-robin on the same arrays, median fit time.",
        "",
        "| head | fit s | speed-up vs LogisticRegression | vs naive torch | accuracy | "
        "Δ accuracy vs LogisticRegression (points) | epochs/iters |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, (sec, acc, ep) in full.items():
        lines.append(
            f"| {name} | {sec:.2f} | {ref_s / sec:.1f}x | {naive_s / sec:.1f}x | {acc:.4f} | "
            f"{100 * (acc - ref_acc):+.1f} | {ep} |"
        )
    lines += [
        "",
        "Notes: `knn` fit only stores the rows (its cost is at predict time); the two "
        "LogisticRegression rows are the same model fitted twice, so their time ratio shows "
        "the noise of the shared machine. `epochs/iters`: epochs run (early stopping), or "
        "solver iterations; 0 where not applicable.",
        "",
        f"16 shots per class (160 training rows), median accuracy over {n_seeds} seeds:",
        "",
        "| head | accuracy |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {acc:.3f} |" for name, acc in shots.items()]
    lines += ["", measured_line(record), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
