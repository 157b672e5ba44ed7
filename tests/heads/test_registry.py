"""The head registry is the one list of heads: everything that names heads derives from it."""

from __future__ import annotations

import pytest
from sklearn.model_selection import ParameterGrid

from embedkit.bench.runner import BenchSpec
from embedkit.bench.sweep import sweep_candidates
from embedkit.cli import build_parser
from embedkit.heads import HEADS, head_class, make_head
from embedkit.heads.registry import RECORDS


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


def test_cli_and_bench_take_their_head_lists_from_the_registry(capsys):
    parser = build_parser()
    for name in HEADS:  # --head accepts every registered head, and nothing else
        assert parser.parse_args(["train", "s.h5", "--head", name, "--out", "o"]).head == name
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "s.h5", "--head", "resnet", "--out", "o"])
    assert f"choose from {', '.join(map(repr, HEADS))}" in capsys.readouterr().err
    default = ("sgd", "logreg", "linear", "mlp", "knn", "centroid")  # the bench_default records
    assert BenchSpec().heads == default
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--help"])
    assert f"(default {','.join(default)};" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_every_parameter_of_every_head_has_a_constraint(record):
    from embedkit.heads._params import check_params

    head = make_head(record.name)
    assert set(type(head)._constraints) == set(head.get_params())  # one table, complete
    check_params(head)  # the defaults pass their own table
