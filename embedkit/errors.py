"""Errors that embedkit raises on purpose.

Every message is one line that names the file, item or argument at fault and says
what to do. The CLI prints ``str(error)`` and exits non-zero; ``--debug`` shows the
traceback.
"""

from __future__ import annotations


class EmbedkitError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""

    exit_code = 2


class UserInputError(EmbedkitError, ValueError):
    """A bad argument, a bad file or a bad item."""


class MissingDependencyError(EmbedkitError, ImportError):
    """An optional dependency is not installed; the message carries the install hint."""

    exit_code = 3


class StoreError(EmbedkitError):
    """A feature store cannot be opened, read or written as asked."""


class StoreMismatchError(StoreError):
    """The store was made with another backbone, tap, preprocessing, dtype or schema."""

    def __init__(self, path: str, field: str, stored: object, given: object):
        self.path, self.field, self.stored, self.given = path, field, stored, given
        super().__init__(
            f"store {path!r} was made with a different {field} "
            f"(store: {short(stored, 80, show=str)}; this run: {short(given, 80, show=str)}); "
            "write to a new --out file, or delete the store to rebuild it"
        )


class ExportError(EmbedkitError):
    """A backbone could not be exported, or its export failed verification."""


def __getattr__(name: str):
    # NotFittedError subclasses sklearn's, so sklearn tooling recognises it. It is built on
    # first use: importing sklearn costs about a second, which every CLI call would pay.
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

        cls = type(
            "NotFittedError",
            (EmbedkitError, _SklearnNotFittedError),
            {
                "__doc__": "A head was used before ``fit``; sklearn tooling recognises it.",
                "__module__": __name__,
            },
        )
        globals()["NotFittedError"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def short(value: object, limit: int = 40, *, show=repr) -> str:
    """``show(value)`` cut to ``limit`` characters ("..." marks a cut), for a message."""
    text = show(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), cut to ``limit``."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def check_known(given, valid, what: str, where: str = "") -> None:
    """Refuse names in ``given`` that are not in ``valid``: the one error of an unknown option.

    Examples
    --------
    >>> check_known({"seeds": 3}, ["seed", "folds"], "audit option")
    Traceback (most recent call last):
    ...
    embedkit.errors.UserInputError: unknown audit option 'seeds'; valid: folds, seed
    """
    unknown = sorted(set(given) - set(valid))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise UserInputError(f"unknown {what} {names}{where}; valid: {', '.join(sorted(valid))}")


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional dependency or raise :class:`MissingDependencyError` with a hint.

    Examples
    --------
    >>> np = require("numpy", "cpu")
    >>> require("not_a_real_module", "text", "the MiniLM backbone")
    Traceback (most recent call last):
    ...
    embedkit.errors.MissingDependencyError: not_a_real_module is needed for the MiniLM backbone; \
install it with: pip install 'embedkit[text]'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"{module} is needed{what}; install it with: pip install 'embedkit[{extra}]'"
        ) from exc
