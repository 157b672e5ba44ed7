"""The head registry is the one list of heads: everything that names heads derives from it."""

from __future__ import annotations

import pytest
from sklearn.model_selection import ParameterGrid

from embedkit.bench.runner import DEFAULT_HEADS
from embedkit.bench.sweep import sweep_candidates
from embedkit.cli import build_parser
from embedkit.heads import HEADS, head_class, make_head
from embedkit.heads.registry import BENCH_DEFAULT_HEADS, RECORDS


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_each_record_matches_its_class(record):
    cls = head_class(record.name)
    assert cls.__name__ == record.cls
    assert hasattr(cls, "partial_fit") == record.streams
    assert cls.spatial_input == (record.name == "attnpool")
    head = make_head(record.name)
    assert set(record.sweep) <= set(head.get_params())  # grids use the heads' own names
    expected = len(ParameterGrid(record.sweep)) if record.sweep else 0
    assert len(sweep_candidates(record.name, head)) == expected


def test_cli_and_bench_take_their_head_lists_from_the_registry():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    head_choices = next(a.choices for a in train._actions if a.dest == "head")
    assert tuple(head_choices) == HEADS
    bench = parser._subparsers._group_actions[0].choices["bench"]
    assert next(a.default for a in bench._actions if a.dest == "heads") == ",".join(DEFAULT_HEADS)
    assert DEFAULT_HEADS == BENCH_DEFAULT_HEADS
    assert DEFAULT_HEADS == ("sgd", "logreg", "linear", "mlp", "knn", "centroid")


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_every_parameter_of_every_head_has_a_constraint(record):
    from embedkit.heads._params import check_params

    head = make_head(record.name)
    assert set(type(head)._constraints) == set(head.get_params())  # one table, complete
    check_params(head)  # the defaults pass their own table
