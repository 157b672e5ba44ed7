"""Sources: what each one lists (ids, digests, labels, splits) and reads, and their errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from embedkit.errors import UserInputError
from embedkit.extract.opening import open_source
from embedkit.extract.sources import (
    ArraySource,
    ImageFolderSource,
    TableSource,
    TextLinesSource,
)


def test_image_folder_labels_ids_and_digests(image_dir):
    source = open_source(image_dir)
    assert isinstance(source, ImageFolderSource) and source.kind == "image"
    listing = source.scan()
    assert listing.ids == tuple(f"{c}/{i}.png" for c in ("cat", "dog") for i in range(3))
    assert listing.labels == ("cat",) * 3 + ("dog",) * 3
    assert listing.label_names == ["cat", "dog"]
    raw = source.read(4)
    assert raw == (image_dir / "dog/1.png").read_bytes()
    assert listing.digests[4] == hashlib.sha256(raw).hexdigest()
    assert source.describe(4) == str(image_dir / "dog/1.png")


def test_flat_folder_is_unlabelled_and_skips_other_files(tmp_path, image_dir):
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("b.png", "a.png"):
        (flat / name).write_bytes((image_dir / "cat/0.png").read_bytes())
    (flat / "notes.txt").write_text("not an image")
    (flat / ".hidden.png").write_bytes(b"x")
    listing = open_source(flat).scan()
    assert listing.ids == ("a.png", "b.png")
    assert listing.labels == (None, None) and listing.label_names == []


def test_split_tags_and_prefixes_ids(image_dir):
    listing = open_source(image_dir, limit=2).scan()
    tagged = listing.tagged("test", None)
    assert tagged.ids == ("test/cat/0.png", "test/cat/1.png")
    assert tagged.splits == ("test", "test")
    assert listing.tagged("val", "").ids == listing.ids
    assert listing.tagged(None, "x:").ids == ("x:cat/0.png", "x:cat/1.png")


def test_text_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("héllo\nworld\n", encoding="utf-8")
    source = open_source(path)
    assert isinstance(source, TextLinesSource)
    listing = source.scan()
    assert listing.ids == ("0", "1") and source.read(0) == "héllo"
    assert listing.digests[0] == hashlib.sha256("héllo".encode()).hexdigest()
    assert source.describe(1) == f"{path}:2"


def test_csv_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,body,topic,split\na,one,x,train\nb,two,,test\n")
    listing = open_source(path, text_column="body", label_column="topic").scan()
    assert listing.ids == ("a", "b")
    assert listing.labels == ("x", None)
    assert listing.splits == ("train", "test")
    with pytest.raises(UserInputError, match=r"no column 'text'.*columns: id, body, topic"):
        open_source(path).scan()
    with pytest.raises(UserInputError, match="no column 'nope' for --label-column"):
        open_source(path, text_column="body", label_column="nope").scan()


def test_jsonl_default_columns_and_bad_line(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"text": "a", "label": 3}, {"text": "b", "label": 10}, {"text": "c", "label": 2}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    source = open_source(path)
    assert isinstance(source, TableSource)
    listing = source.scan()
    assert listing.labels == ("3", "10", "2")
    assert listing.label_names == ["2", "3", "10"]  # numeric names sort as numbers
    path.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(UserInputError, match=r"t.jsonl:2: not valid JSON"):
        open_source(path).scan()


def test_npy_rows_labels_and_limit(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([2, -1, 0, 2]))
    source = open_source(tmp_path / "x.npy", labels=tmp_path / "y.npy", limit=3)
    assert isinstance(source, ArraySource) and source.item_shape == (6,)
    listing = source.scan()
    assert listing.ids == ("0", "1", "2")
    assert listing.labels == ("2", None, "0")
    # class names are the distinct values over the whole file (not just --limit), numerically
    assert listing.label_names == ["0", "2"]
    assert listing.digests[1] == hashlib.sha256(x[1].tobytes()).hexdigest()
    np.testing.assert_array_equal(source.read(2), x[2])


def test_npy_label_count_mismatch(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(3, np.int64))
    with pytest.raises(UserInputError, match=r"y.npy: labels have shape \(3,\).*4 rows"):
        open_source(tmp_path / "x.npy", labels=tmp_path / "y.npy").scan()


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("missing.npy", {}, "no such file or folder"),
        ("data.xlsx", {}, "unknown source type '.xlsx'"),
        ("data.parquet", {}, "data.parquet: not a readable Parquet file"),
        ("t.txt", {"labels": "y.npy"}, "--labels applies to .npy sources"),
        ("t.txt", {"text_column": "body"}, "apply to tables"),
        ("t.txt", {"limit": 0}, "--limit 0"),
    ],
)
def test_open_source_errors(tmp_path, name, kwargs, message):
    for existing in ("data.parquet", "data.xlsx", "t.txt"):
        (tmp_path / existing).write_text("x\n")
    with pytest.raises(UserInputError, match=message):
        open_source(tmp_path / name, **kwargs)


def test_empty_folder_and_non_npy(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no image files found"):
        open_source(tmp_path / "empty").scan()
    (tmp_path / "fake.npy").write_bytes(b"not numpy")
    with pytest.raises(UserInputError, match=r"fake.npy: not a .npy array"):
        open_source(tmp_path / "fake.npy")
