"""Heads as the bench builds them, and the grids of the optional per-head sweep."""

from __future__ import annotations

import itertools

from embedkit.errors import UserInputError

# What `--sweep` tries, on a validation part carved from each run's training rows only.
# Values of parameters that a head does not have are skipped, so the grids follow the
# heads' own parameter names (sklearn's get_params).
SWEEP_GRIDS: dict[str, dict[str, list]] = {
    "logreg": {"C": [0.01, 0.1, 1.0, 10.0, 100.0]},
    "svm": {"C": [0.01, 0.1, 1.0, 10.0, 100.0]},
    "ridge": {"alpha": [0.1, 1.0, 10.0, 100.0, 1000.0]},
    "sgd": {"alpha": [1e-5, 1e-4, 1e-3, 1e-2]},
    "knn": {"n_neighbors": [1, 3, 5, 10, 20]},
    "linear": {"weight_decay": [0.0, 1e-4, 1e-2], "lr": [1e-3, 1e-2]},
    "mlp": {"weight_decay": [0.0, 1e-4, 1e-2], "lr": [1e-3, 1e-2]},
    "attnpool": {"weight_decay": [0.0, 1e-4, 1e-2], "lr": [1e-3, 1e-2]},
}


def known_heads() -> tuple[str, ...]:
    from embedkit.heads import HEADS

    return tuple(HEADS)


def check_heads(names: tuple[str, ...]) -> None:
    """Raise :class:`UserInputError` for a head name that ``embedkit.heads`` does not know."""
    known = known_heads()
    for name in names:
        if name not in known:
            raise UserInputError(f"unknown head {name!r} in --heads; known: {', '.join(known)}")


def build_head(name: str, seed: int, params: dict | None = None):
    """An unfitted head from ``embedkit.heads.make_head`` with the run's seed."""
    from embedkit.heads import make_head

    return make_head(name, random_state=seed, **(params or {}))


def sweep_candidates(name: str, head) -> list[dict]:
    """Parameter settings to try for ``head``: the product of its grid."""
    grid = {
        key: values for key, values in SWEEP_GRIDS.get(name, {}).items() if key in head.get_params()
    }
    if not grid:
        return []
    keys = sorted(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
