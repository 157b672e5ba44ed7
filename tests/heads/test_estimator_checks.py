"""Every head passes scikit-learn's estimator checks (torch heads with a short schedule)."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from embedkit.heads import HEADS, TORCH_HEADS, make_head
from embedkit.heads.registry import SEMI_HEADS

# Short schedules keep the torch checks fast; lr is raised to match.
_FAST = {"max_epochs": 20, "lr": 5e-2, "batch_size": 256}


def _head(name):
    params = dict(_FAST) if name in TORCH_HEADS else {}
    if name == "attnpool":
        params |= {"heads": 2, "dim": 16}
    if name == "mlp":
        params |= {"hidden": 32}
    if name == "logregcv":  # the same folds-then-refit path; the default grid cost 3x the CPU
        params |= {"Cs": (0.1, 1.0), "cv": 3}
    return make_head(name, random_state=0, **params)


def _expected_failures(estimator) -> dict:
    """The semi-supervised heads read -1 as "unlabelled", as scikit-learn's own do."""
    if getattr(estimator, "semi_supervised", False):
        return {"check_classifiers_classes": "-1 marks an unlabelled row (sklearn's convention)"}
    return {}


assert SEMI_HEADS  # the exemption above is for these


@parametrize_with_checks([_head(name) for name in HEADS], expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
