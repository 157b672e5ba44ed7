"""The battery's Parquet and Arrow cases: missing and mistyped columns, corrupt files, nulls,
undecodable image bytes. Every file is written by pyarrow; error cases run against a seeded
store that must stay unchanged."""

# ruff: noqa: E501 - the tables read best one case per line
from __future__ import annotations

import io

from tests.reliability.cases_data import _ids, _labels
from tests.reliability.cases_images import GOOD_IMAGES, _recorded_bad
from tests.reliability.harness import Case


def _parquet(columns: dict, **options) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf, **options)
    return buf.getvalue()


def _feather(columns: dict) -> bytes:
    import pyarrow as pa
    import pyarrow.feather as feather

    buf = io.BytesIO()
    feather.write_feather(pa.table(columns), buf)
    return buf.getvalue()


def _case(name, model, file, content, code, names=(), check=None, extra=()) -> Case:
    argv = ("extract", f"{{{model}}}", f"{{d}}/{file}", "--out", "{d}/out.h5", "--quiet", *extra)
    seeds = {"out.h5": model} if code else {}  # refused runs must leave the seeded store alone
    return Case(f"arrow_{name}", argv, code, names, {file: content}, seeds, check)


def arrow_cases() -> list[Case]:
    png = next(iter(GOOD_IMAGES.values()))
    texts = ["the cat", "the dog", "a red mat"]
    t, i = "text", "image"
    return [
        _case("parquet_texts", t, "a.parquet", _parquet({"text": texts, "label": ["x", "y", "x"]}, row_group_size=2), 0,
              check=_labels(["x", "y", "x"])),
        _case("parquet_id_column", t, "a.parquet", _parquet({"body": texts, "key": ["p", "q", "r"]}), 0,
              check=_ids(["p", "q", "r"]), extra=("--column", "body", "--id-column", "key")),
        _case("feather_texts", t, "a.feather", _feather({"text": texts}), 0, check=_ids(["0", "1", "2"])),
        _case("parquet_no_column", t, "a.parquet", _parquet({"body": texts}), 2, ("a.parquet", "--column", "body")),
        _case("parquet_unknown_column", t, "a.parquet", _parquet({"text": texts}), 2, ("a.parquet", "'nope'", "--label-column"),
              extra=("--label-column", "nope")),
        _case("parquet_numbers_as_text", t, "a.parquet", _parquet({"text": [1.5, 2.5]}), 2, ("a.parquet", "'text'", "double")),
        _case("parquet_null_text", t, "a.parquet", _parquet({"text": ["the cat", None]}), 2, ("a.parquet: row 1", "empty text")),
        _case("parquet_empty_id", t, "a.parquet", _parquet({"text": texts, "id": ["a", "", "c"]}), 2, ("a.parquet: row 1", "empty id")),
        _case("parquet_bad_split", t, "a.parquet", _parquet({"text": texts, "split": ["train", "dev", "test"]}), 2, ("row 1", "'dev'")),
        _case("parquet_truncated", t, "a.parquet", _parquet({"text": texts})[:40], 2, ("a.parquet", "not a readable Parquet")),
        _case("parquet_not_parquet", t, "a.parquet", b"text\nthe cat\n", 2, ("a.parquet", "not a readable Parquet")),
        _case("arrow_garbage", t, "a.arrow", b"ARROW1\x00\x00garbage", 2, ("a.arrow", "Arrow IPC")),
        _case("parquet_no_rows", t, "a.parquet", _parquet({"text": pa_empty()}), 2, ("a.parquet", "no rows")),
        _case("parquet_image_bytes", i, "a.parquet", _parquet({"image": [png, png]}), 0, check=_ids(["0", "1"])),
        _case("parquet_image_broken", i, "a.parquet", _parquet({"image": [png, b"\x89PNG\r\n broken"]}), 2,
              ("a.parquet: row 1 ('image')", "cannot decode image", "--skip-bad")),
        _case("parquet_image_null", i, "a.parquet", _parquet({"image": [png, None]}), 2, ("a.parquet: row 1", "null")),
        _case("parquet_image_broken_skipped", i, "a.parquet", _parquet({"image": [png, b"junk"]}), 0,
              check=_recorded_bad("1", "decode"), extra=("--skip-bad",)),
        _case("parquet_image_missing_path", i, "a.parquet", _parquet({"path": ["gone.png"]}), 2, ("a.parquet: row 0", "cannot read")),
    ]  # fmt: skip


def pa_empty():
    import pyarrow as pa

    return pa.array([], pa.string())
