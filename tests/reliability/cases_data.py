"""The battery's text and array cases: line breaks, encodings, CSV/JSONL rows, labels, values.

The tiny text model tokenizes on whitespace with a fixed vocabulary, so two texts that
must read the same (``"the\\ncat"`` in a quoted CSV field and ``"the cat"``) give equal
features, and a kept BOM or a lost line break shows up as an unknown token.
"""

# ruff: noqa: E501 - the tables read best one case per line
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.reliability.cases_images import GOOD_X, _recorded_bad, _same_features, _store, npy
from tests.reliability.harness import Case

TEXT_ARGV = ("extract", "{text}", "{d}/{file}", "--out", "{d}/out.h5", "--quiet")
ARRAY_ARGV = ("extract", "{array}", "{d}/x.npy", "--out", "{d}/out.h5", "--quiet")


def _text_case(name, file, content, code, names=(), check=None, extra=()) -> Case:
    argv = tuple(a.replace("{file}", file) for a in TEXT_ARGV) + tuple(extra)
    content = content if isinstance(content, bytes) else content.encode("utf-8")
    seeds = {"out.h5": "text"} if code else {}  # accepted cases check the store they make
    return Case(f"text_{name}", argv, code, names, {file: content}, seeds, check)


def _ids(expected: list[str]):
    def check(folder: Path) -> None:
        with _store(folder) as fs:
            assert fs.ids().tolist() == expected, fs.ids().tolist()

    return check


def _labels(expected: list[str | None]):
    def check(folder: Path) -> None:
        with _store(folder) as fs:
            names = fs.label_names
            got = [None if i < 0 else names[i] for i in fs.labels().tolist()]
            assert got == expected, (got, names)

    return check


def _all(*checks):
    def check(folder: Path) -> None:
        for c in checks:
            c(folder)

    return check


def text_cases() -> list[Case]:
    t = _text_case
    same01 = _same_features("0", "1")
    cases = [
        # .txt: only \n and \r\n end a line; other separators stay in the text
        t("txt_u2028", "a.txt", "the\u2028cat\nthe cat\n", 0, check=_ids(["0", "1"])),
        t("txt_formfeed", "a.txt", "the\x0ccat\nthe cat\n", 0, check=_ids(["0", "1"])),
        t("txt_vtab", "a.txt", "the\x0bcat\nthe cat\n", 0, check=_ids(["0", "1"])),
        t("txt_nel", "a.txt", "the\x85cat\nthe cat\n", 0, check=_ids(["0", "1"])),
        t("txt_filesep", "a.txt", "the\x1ccat\x1dsat\x1e\nthe cat sat\n", 0, check=_ids(["0", "1"])),
        t("txt_lone_cr", "a.txt", "the\rcat\nthe cat\n", 0, check=_ids(["0", "1"])),
        t("txt_crlf", "a.txt", "the cat\r\nthe cat\r\n", 0, check=_all(_ids(["0", "1"]), same01)),
        t("txt_bom", "a.txt", "\ufeffthe cat\nthe cat\n", 0, check=same01),
        t("txt_no_final_newline", "a.txt", "the cat\nthe dog", 0, check=_ids(["0", "1"])),
        t("txt_blank_line", "a.txt", "the cat\n\nthe dog\n", 2, ("a.txt:2", "empty text")),
        t("txt_spaces_line", "a.txt", "the cat\n   \t\n", 2, ("a.txt:2", "empty text")),
        t("txt_empty", "a.txt", "", 2, ("a.txt", "no texts")),
        t("txt_only_newlines", "a.txt", "\n\n", 2, ("a.txt:1", "empty text")),
        t("txt_latin1", "a.txt", "the cat\ncaf\xe9\n".encode("latin-1"), 2, ("a.txt:2", "UTF-8")),
        t("txt_utf16", "a.txt", "the cat\n".encode("utf-16"), 2, ("a.txt", "UTF-8")),
        t("txt_nul", "a.txt", "the\x00cat\n", 0, check=_ids(["0"])),
        # CSV: the csv module, newline="" (quoted CR/LF kept), BOM removed, strict quoting
        t("csv_newline", "a.csv", 'text\n"the\ncat"\nthe cat\n', 0, check=same01),
        t("csv_crlf_newline", "a.csv", 'text\r\n"the\r\ncat"\r\nthe cat\r\n', 0, check=same01),
        t("csv_cr", "a.csv", 'text\n"the\rcat"\nthe cat\n', 0, check=same01),
        t("csv_bom", "a.csv", "\ufefftext,label\nthe cat,x\n", 0, check=_labels(["x"])),
        t("csv_bom_crlf", "a.csv", "\ufefftext\r\nthe cat\r\n", 0, check=_ids(["0"])),
        t("csv_no_text_column", "a.csv", "body\nthe cat\n", 2, ("a.csv", "'text'", "body")),
        t("csv_extra_field", "a.csv", "text\nthe cat\nthe,cat\n", 2, ("a.csv:3", "2 fields")),
        t("csv_unclosed_quote", "a.csv", 'text\n"the cat\n', 2, ("a.csv:2", "CSV")),
        t("csv_text_after_quote", "a.csv", 'text\n"the"cat\n', 2, ("a.csv:2", "CSV")),
        t("csv_duplicate_header", "a.csv", "text,text\na,b\n", 2, ("a.csv", "'text'", "twice")),
        t("csv_duplicate_id", "a.csv", "id,text\nx,the\nx,cat\n", 2, ("'x'", "twice")),
        t("csv_empty_id", "a.csv", "id,text\n,the\n", 2, ("a.csv:2", "empty id")),
        t("csv_bad_split", "a.csv", "text,split\nthe,training\n", 2, ("a.csv:2", "'training'")),
        t("csv_header_only", "a.csv", "text,label\n", 2, ("a.csv", "no texts")),
        t("csv_empty_file", "a.csv", "", 2, ("a.csv", "'text'")),
        t("csv_empty_text", "a.csv", "id,text\nx,\n", 2, ("'x'", "empty text")),
        t("csv_short_row", "a.csv", "id,label,text\nx,y\n", 2, ("'x'", "empty text")),
        t("csv_blank_label", "a.csv", "text,label\nthe,\ncat,b\n", 0, check=_labels([None, "b"])),
        t("csv_ids_after_multiline", "a.csv", 'text\n"the\ncat"\ndog\n', 0, check=_ids(["0", "1"])),
        t("csv_latin1", "a.csv", "text\ncaf\xe9\n".encode("latin-1"), 2, ("a.csv:2", "UTF-8")),
        t("tsv_quoted_tab", "a.tsv", 'text\n"the\tcat"\nthe cat\n', 0, check=same01),
        # JSONL: one object per \n-ended line, read by json
        t("jsonl_u2028", "a.jsonl", '{"text": "the\u2028cat"}\n{"text": "dog"}\n', 0,
          check=_ids(["0", "1"])),
        t("jsonl_crlf", "a.jsonl", '{"text": "the"}\r\n{"text": "cat"}\r\n', 0, check=_ids(["0", "1"])),
        t("jsonl_bom", "a.jsonl", '\ufeff{"text": "the cat"}\n', 0, check=_ids(["0"])),
        t("jsonl_not_json", "a.jsonl", '{"text": "a"}\n{text: b}\n', 2, ("a.jsonl:2", "JSON")),
        t("jsonl_array_line", "a.jsonl", '["the cat"]\n', 2, ("a.jsonl:1", "object")),
        t("jsonl_deep", "a.jsonl", "[" * 100_000 + "]" * 100_000 + "\n", 2, ("a.jsonl:1",)),
        t("jsonl_text_number", "a.jsonl", '{"text": 5}\n', 2, ("a.jsonl:1", "text")),
        t("jsonl_text_list", "a.jsonl", '{"text": ["a"]}\n', 2, ("a.jsonl:1", "text")),
        t("jsonl_text_null", "a.jsonl", '{"id": "q", "text": null}\n', 2, ("'q'", "empty text")),
        t("jsonl_text_surrogate", "a.jsonl", '{"text": "a\\ud800b"}\n', 2, ("a.jsonl:1", "surrogate")),
        t("jsonl_id_surrogate", "a.jsonl", '{"id": "\\udcff", "text": "a"}\n', 2, ("a.jsonl:1", "id")),
        t("jsonl_id_bool", "a.jsonl", '{"id": true, "text": "a"}\n', 2, ("a.jsonl:1", "id", "boolean")),
        t("jsonl_id_list", "a.jsonl", '{"id": [1], "text": "a"}\n', 2, ("a.jsonl:1", "id")),
        t("jsonl_split_bad", "a.jsonl", '{"text": "a", "split": "dev"}\n', 2, ("a.jsonl:1", "'dev'")),
        t("jsonl_split_number", "a.jsonl", '{"text": "a", "split": 1}\n', 2, ("a.jsonl:1", "'1'")),
        t("jsonl_empty", "a.jsonl", "\n\n", 2, ("a.jsonl", "'text'")),
    ]  # fmt: skip
    bad_labels = {
        "list": ("[1, 2]", "list"),
        "dict": ('{"x": 1}', "object"),
        "bool": ("true", "boolean"),
        "fraction": ("1.5", "whole number"),
        "surrogate": ('"\\ud800"', "surrogate"),
    }
    for kind, (value, word) in bad_labels.items():
        content = f'{{"text": "the", "label": "a"}}\n{{"text": "cat", "label": {value}}}\n'
        cases.append(t(f"jsonl_label_{kind}", "a.jsonl", content, 2, ("a.jsonl:2", word)))
    missing = '{"text": "a", "label": "x"}\n{"text": "b", "label": %s}\n'
    for kind, value in {"null": "null", "nan": "NaN", "empty": '""'}.items():
        check = _labels(["x", None])
        cases.append(t(f"jsonl_label_{kind}", "a.jsonl", missing % value, 0, check=check))
    cases += [
        t("jsonl_label_whole_float", "a.jsonl", '{"text": "a", "label": 2.0}\n', 0,
          check=_labels(["2"])),
        t("jsonl_label_late_column", "a.jsonl", '{"text": "a"}\n{"text": "b", "label": "y"}\n', 0,
          check=_labels([None, "y"])),
        t("jsonl_label_column_missing", "a.jsonl", '{"text": "a"}\n', 2, ("'topic'", "--label-column"),
          extra=("--label-column", "topic")),
    ]  # fmt: skip
    return cases


def _array_case(name, x, code, names=(), check=None, files=None, extra=(), model="array"):
    argv = tuple(a.replace("{array}", "{" + model + "}") for a in ARRAY_ARGV) + tuple(extra)
    files = {"x.npy": x if isinstance(x, bytes) else npy(x), **(files or {})}
    # the seeds are float32 stores; accepted cases check the store they make
    seeds = {} if "--dtype" in extra or not code else {"out.h5": model}
    return Case(f"array_{name}", argv, code, names, files, seeds, check)


def _with(value, row: int = 3, x: np.ndarray = GOOD_X) -> np.ndarray:
    bad = x.copy()
    bad[row, 1] = value
    return bad


def array_cases() -> list[Case]:
    a = _array_case
    f64 = GOOD_X.astype(np.float64)
    cases = []
    for name, x, word in (
        ("nan", _with(np.nan), "NaN"),
        ("inf", _with(np.inf), "infinite"),
        ("neg_inf", _with(-np.inf), "infinite"),
        ("f64_overflow", _with(1e300, x=f64), "float32 range"),
    ):
        cases.append(a(name, x, 2, ("x.npy", "row 3", word, "--skip-bad")))
        cases.append(a(f"{name}_skip", x, 0, check=_recorded_bad("3", word), extra=("--skip-bad",)))
    labels = GOOD_X[:, 0]
    y = lambda v: {"y.npy": npy(np.asarray(v))}  # noqa: E731
    with_labels = ("--labels", "{d}/y.npy")
    cases += [
        a("object_array", np.array([1, "a", None] * 2, dtype=object), 2, ("x.npy", "np.save")),
        a("wrong_width", GOOD_X[:, :5], 2, ("x.npy", "(5,)")),
        a("one_dimensional", labels, 2, ("x.npy", "()")),
        a("three_dimensional", GOOD_X.reshape(6, 6, 1), 2, ("x.npy", "(6, 1)")),
        a("zero_rows", np.zeros((0, 6), np.float32), 2, ("x.npy", "empty")),
        a("scalar", np.float32(1.0), 2, ("x.npy", "empty")),
        a("complex", GOOD_X.astype(np.complex64), 2, ("x.npy", "complex64")),
        a("strings", np.full((6, 6), "a"), 2, ("x.npy", "<U1")),
        a("structured", np.zeros(6, dtype=[("a", "f4", (6,))]), 2, ("x.npy",)),
        a("truncated", npy(GOOD_X)[:150], 2, ("x.npy", "np.save")),
        a("not_npy", b"1,2,3\n4,5,6\n", 2, ("x.npy", "np.save")),
        a("int64", np.arange(36).reshape(6, 6), 0),
        a("bool", GOOD_X > 0, 0),
        a("big_endian", GOOD_X.astype(">f4"), 0),
        a("fortran", np.asfortranarray(GOOD_X), 0),
        a("labels_wrong_length", GOOD_X, 2, ("y.npy", "one label per row"), files=y([0, 1]),
          extra=with_labels),
        a("labels_2d", GOOD_X, 2, ("y.npy", "(6, 1)"), files=y(np.zeros((6, 1), int)),
          extra=with_labels),
        a("labels_fraction", GOOD_X, 2, ("y.npy", "row 2", "whole number"),
          files=y([0, 1, 0.5, 1, 0, 1]), extra=with_labels),
        a("labels_bool", GOOD_X, 2, ("y.npy", "bool"), files=y([True, False] * 3), extra=with_labels),
        a("labels_complex", GOOD_X, 2, ("y.npy", "complex"), files=y(np.ones(6, np.complex64)),
          extra=with_labels),
        a("labels_object", GOOD_X, 2, ("y.npy",), files=y(np.array([[1], "a"] * 3, dtype=object)),
          extra=with_labels),
        a("labels_missing_file", GOOD_X, 2, ("y.npy",), extra=with_labels),
        a("labels_bytes_not_utf8", GOOD_X, 2, ("y.npy", "row 1", "UTF-8"),
          files=y(np.array([b"a", b"\xff", b"a", b"a", b"a", b"a"])), extra=with_labels),
        a("labels_too_many_classes", np.zeros((100_001, 6), np.float32), 2, ("y.npy", "100,001"),
          files=y(np.arange(100_001)), extra=with_labels),
        a("labels_huge_value", GOOD_X, 0, files=y([0, 1, 2_000_000_000, 1, 0, -1]),
          extra=with_labels, check=_labels(["0", "1", "2000000000", "1", "0", None])),
        a("labels_nan_unlabelled", GOOD_X, 0, files=y([0.0, np.nan, 1.0, 1.0, 0.0, 2.0]),
          extra=with_labels, check=_labels(["0", None, "1", "1", "0", "2"])),
        a("labels_strings_empty", GOOD_X, 0, files=y(["cat", "", "dog", "cat", "", "dog"]),
          extra=with_labels, check=_labels(["cat", None, "dog", "cat", None, "dog"])),
        # the model's output: NaN / -inf from log(x), float16 overflow
        a("model_nan", _with(-1.0, x=np.abs(GOOD_X) + 1), 2, ("x.npy", "row 3", "NaN", "'y'"),
          model="log"),
        a("model_neg_inf", _with(0.0, x=np.abs(GOOD_X) + 1), 2, ("x.npy", "row 3", "NaN"),
          model="log"),
        a("model_nan_skip", _with(-1.0, x=np.abs(GOOD_X) + 1), 0, model="log", extra=("--skip-bad",),
          check=_recorded_bad("3", "NaN")),
        a("float16_overflow", _with(1e6), 2, ("x.npy", "row 3", "float16"), extra=("--dtype", "float16")),
    ]  # fmt: skip
    return cases
