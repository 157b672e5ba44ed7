"""``embedkit select`` on a store: pick rows to label and write them where a person labels them.

The pool is every row outside the test and val splits; rows with a label are the ones a
person labelled already (``embedkit label``). Each pick carries its id, its source (file
path or text), the strategy's score and, when two or more classes are labelled, the
guess of a head fitted on the labelled rows and its confidence. Written as:

- ``picks.csv``: UTF-8 with a byte-order mark, quoted, formula-safe (opens cleanly in a
  spreadsheet), with an empty ``label`` column to fill in for ``embedkit label``;
- ``picks.html``: a contact sheet of thumbnails (images only);
- ``picks.tasks.json``: Label Studio tasks (its JSON export goes back to ``embedkit label``).

    embedkit select feats.h5 --budget 100 --out picks.csv
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError
from embedkit.heads.tapsets import loop_taps, read_joined
from embedkit.labelling.items import ItemSource, item_sources
from embedkit.labelling.strategies import Selection, select
from embedkit.rows.splits import split_roles

_THUMB = 96  # contact-sheet thumbnail size in pixels


@dataclass(frozen=True)
class Pick:
    """One row to label."""

    id: str
    source: ItemSource
    score: float
    guess: str  # the current head's class for it; "" before two classes are labelled
    confidence: float | None


def select_store(
    store,
    budget: int,
    *,
    strategy: str = "auto",
    seed: int = 0,
    tap: str | None = None,
    head: str = "logreg",
    record: dict | None = None,
) -> tuple[list[Pick], Selection]:
    """Pick ``budget`` unlabelled pool rows of ``store`` to label next (see module docstring).

    Examples
    --------
    >>> import tempfile, os
    >>> from sklearn.datasets import make_blobs
    >>> from embedkit.store import FeatureStore
    >>> from embedkit.rows import from_arrays
    >>> X, _ = make_blobs(300, 8, centers=3, random_state=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> from_arrays(path, X.astype("float32")).close()
    >>> picks, how = select_store(path, 3, strategy="typical")
    >>> len(picks), how.strategy
    (3, 'typical')
    """
    from embedkit.store import FeatureStore

    with FeatureStore(store) as fs:
        pool = np.flatnonzero(split_roles(fs.splits()) == "train")  # not test or val
        if not len(pool):
            raise UserInputError(f"{store}: every row is in the test or val split; nothing to pick")
        labels = fs.labels(pool) if fs.has_labels else np.full(len(pool), -1)
        X = read_joined(fs, loop_taps(fs, pool, tap), pool, pool)[1][0]  # (P, D)
        ids, names, provenance = fs.ids(pool), fs.label_names, fs.provenance
    how = select(X, labels, budget, strategy=strategy, seed=seed, head=head, record=record)
    guesses, confidence = [""] * budget, [None] * budget
    known = labels >= 0
    if len(np.unique(labels[known])) >= 2:
        from embedkit.heads import make_head

        model = make_head(head, random_state=seed).fit(X[known], labels[known])
        proba = model.predict_proba(X[how.rows])  # (budget, K)
        guesses = [names[int(model.classes_[b])] for b in proba.argmax(1)]
        confidence = proba.max(1).tolist()
    picked = ids[how.rows].tolist()
    sources = item_sources(provenance, picked)
    picks = [
        Pick(str(i), src, float(s), g, c)
        for i, src, s, g, c in zip(picked, sources, how.scores, guesses, confidence)
    ]
    return picks, how


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: no formula from a leading = + - @."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def write_csv(picks: list[Pick], path: str | Path) -> Path:
    """picks.csv: id, label (to fill in), source, score, guess, confidence."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        out = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
        out.writerow(["id", "label", "source", "score", "guess", "confidence"])
        for p in picks:
            conf = "" if p.confidence is None else round(p.confidence, 4)
            out.writerow([p.id, "", _cell(p.source.text), round(p.score, 6), p.guess, conf])
    return path


def _thumbnail(source: ItemSource) -> str | None:
    """A base64 PNG thumbnail of an image item, or None."""
    from PIL import Image

    try:
        if source.pixels is not None:
            img = Image.fromarray(source.pixels)
        elif source.kind == "image":
            img = Image.open(source.text)
        else:
            return None
        img = img.convert("RGB")
        img.thumbnail((_THUMB, _THUMB))
        if min(img.size) < _THUMB // 2:  # tiny images (28x28) scaled up to be seen
            scale = _THUMB // max(img.size)
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    except (OSError, ValueError):
        return None
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_html(picks: list[Pick], path: str | Path, *, title: str = "picks") -> Path:
    """A contact sheet: each pick's thumbnail, id, guess and confidence."""
    cards = []
    for n, p in enumerate(picks, start=1):
        png = _thumbnail(p.source)
        img = f'<img src="data:image/png;base64,{png}">' if png else "<div>(no image)</div>"
        guess = f"{p.guess} {p.confidence:.2f}" if p.guess else ""
        cards.append(
            f"<figure>{img}<figcaption>#{n} <b>{html.escape(p.id)}</b><br>"
            f"{html.escape(guess)}</figcaption></figure>"
        )
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}figure{display:inline-block;margin:6px;"
        "width:120px;text-align:center;font-size:12px}img{image-rendering:pixelated}</style>"
        f"<h1>{html.escape(title)}: {len(picks)} items to label</h1>" + "".join(cards)
    )
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


def write_label_studio(picks: list[Pick], path: str | Path) -> Path:
    """Label Studio tasks (``data.id`` is the store id; the guess is a pre-annotation)."""
    tasks = []
    for p in picks:
        png = _thumbnail(p.source)  # None for a text
        data = {"image": f"data:image/png;base64,{png}"} if png else {"text": p.source.text}
        task: dict = {"data": {"id": p.id, **data}}
        if p.guess:
            choice = {"choices": [p.guess]}
            result = {"from_name": "label", "to_name": "item", "type": "choices", "value": choice}
            task["predictions"] = [{"result": [result], "score": p.confidence}]
        tasks.append(task)
    Path(path).write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    return Path(path)
