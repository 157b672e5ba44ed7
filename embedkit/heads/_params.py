"""Declarative parameters for every head, in scikit-learn's ``_parameter_constraints`` style.

A head class declares ``_params``: parameter name -> (default, the list of what it may be:
an :class:`Interval`, an :class:`Options` set, ``None``, ``dict``, ``bool`` or
:data:`DEVICE`). :class:`Declared` makes its ``__init__`` from that table (the first
parameter positional, the rest keyword-only, type hints from the rules) and its
``_constraints``; a head that writes its own ``__init__`` declares ``_constraints`` alone.
:func:`check_params` runs at the start of ``fit``, of the first
``partial_fit`` and of ``initialize`` (so also in ``load_head``), before anything is
allocated; a value outside every entry raises one :class:`UserInputError` line naming
the head, the parameter and what it may be. (scikit-learn's own validator lives in a
private module, so embedkit keeps this small table of its own.)

Widths are capped (:data:`MAX_WIDTH`) and a torch module over :data:`MAX_PARAMETERS`
weights is refused before it is built; see docs/heads.md.

    embedkit train feats.h5 --head mlp --param hidden=1099511627776 --out h/   # exit 2
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from dataclasses import dataclass

from embedkit.errors import UserInputError, short

MAX_WIDTH = 16384  # hidden / dim of a torch head: 16,384 is 8x the largest useful probe width
MAX_PARAMETERS = 2**28  # 268M weights (1 GiB in float32): far above any head on cached features
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


@dataclass(frozen=True)
class Interval:
    """Numbers (``int`` or ``float``) between ``low`` and ``high`` (None: unbounded)."""

    kind: type  # int: integers only (not bool); float: any finite real
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right" or "neither"

    def __contains__(self, value) -> bool:
        kind = numbers.Integral if self.kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        above = self.low is None or (value >= self.low if left else value > self.low)
        return above and (self.high is None or (value <= self.high if right else value < self.high))

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'an int' if self.kind is int else 'a number'} in {left}{low}, {high}{right}"


@dataclass(frozen=True)
class Options:
    """One of a few values, compared with their type (``True`` is not ``1``)."""

    values: tuple

    def __contains__(self, value) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


def _positive_tuple(value) -> bool:
    """A non-empty tuple of positive numbers (LogRegCVHead's ``Cs``)."""
    real = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    return isinstance(value, tuple) and bool(value) and all(real(v) and v > 0 for v in value)


_KINDS = {  # the entries that are not an Interval or Options: what each accepts, in words
    None: (lambda v: v is None, "None"),
    bool: (lambda v: isinstance(v, bool), "a bool"),
    dict: (lambda v: isinstance(v, dict), "a dict"),
    tuple: (_positive_tuple, "a tuple of positive numbers"),
    DEVICE: (
        lambda v: isinstance(v, str) and DEVICE.fullmatch(v) is not None,
        "a device (auto, cpu, cuda, cuda:N)",
    ),
}


def _annotation(rules) -> str:
    """``"str | dict | None"``: the types a parameter's rules accept."""
    kinds = {None: "None", bool: "bool", dict: "dict", tuple: "tuple", DEVICE: "str"}
    names = [
        r.kind.__name__ if isinstance(r, Interval)
        else type(r.values[0]).__name__ if isinstance(r, Options) else kinds[r]
        for r in rules
    ]  # fmt: skip
    return " | ".join(dict.fromkeys(names))


class Declared:
    """Builds ``__init__`` and ``_constraints`` of a subclass that declares ``_params``.

    The ``__init__`` stores each parameter and nothing else (scikit-learn's rule); its
    signature is what ``get_params`` and ``clone`` read.
    """

    _params: dict = {}  # name -> (default, rules); the first is positional

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        table = cls.__dict__.get("_params")
        if not table:
            return
        P = inspect.Parameter
        kinds = [P.POSITIONAL_OR_KEYWORD] + [P.KEYWORD_ONLY] * (len(table) - 1)
        signature = inspect.Signature(
            [P("self", P.POSITIONAL_OR_KEYWORD)]
            + [P(name, kind, default=default, annotation=_annotation(rules))
               for (name, (default, rules)), kind in zip(table.items(), kinds)]
        )  # fmt: skip

        def __init__(self, *args, **kwargs):
            given = signature.bind(self, *args, **kwargs).arguments
            for name, (default, _) in table.items():
                setattr(self, name, given.get(name, default))

        __init__.__signature__ = signature
        cls.__init__ = __init__
        cls._constraints = {name: rules for name, (_, rules) in table.items()}


def check_params(head) -> None:
    """Raise :class:`UserInputError` for the first parameter of ``head`` its table refuses.

    Examples
    --------
    >>> from embedkit.heads import make_head
    >>> check_params(make_head("knn", n_neighbors=0))
    Traceback (most recent call last):
    ...
    embedkit.errors.UserInputError: KNNHead parameter n_neighbors=0 is invalid; it must be \
an int in [1, 1e+06]
    """
    params = head.get_params(deep=False)
    for name, rules in type(head)._constraints.items():
        value = params.get(name)
        checks = [
            (r.__contains__, str(r)) if isinstance(r, (Interval, Options)) else _KINDS[r]
            for r in rules
        ]  # (accepts, in words) per rule
        if not any(accepts(value) for accepts, _ in checks):
            allowed = " or ".join(words for _, words in checks)
            raise UserInputError(
                f"{type(head).__name__} parameter {name}={short(value)} is invalid; "
                f"it must be {allowed}"
            )


# Shared entries of the tables.
POSITIVE = Interval(float, 0, None, "neither")
NON_NEGATIVE = Interval(float, 0, None)
OPEN_FRACTION = Interval(float, 0, 1, "neither")
SEED = [Interval(int, 0, 2**32 - 1), None]
CLASS_WEIGHT = [Options(("balanced",)), dict, None]
N_JOBS = [Options((-1,)), Interval(int, 1, 4096), None]
ITERATIONS = Interval(int, 1, 10**7)
