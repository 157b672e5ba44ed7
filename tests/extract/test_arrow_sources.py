"""Parquet, Arrow IPC/Feather, Hugging Face save_to_disk folders and in-memory tables as sources:
real pyarrow-written files (well-formed and malformed) through the real extract."""

from __future__ import annotations

import hashlib
import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from embedkit.errors import UserInputError
from embedkit.extract import extract, open_source
from embedkit.store import FeatureStore
from tests.helpers import cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
feather = pytest.importorskip("pyarrow.feather")

TEXTS = ["the cat sat", "a dog ran fast", "the red mat", "a big blue dog", "cat on mat"]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _png(seed: int, size=(20, 24)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture()
def text_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table({"body": TEXTS, "y": ["a", "b", "a", "b", "a"], "key": list("vwxyz")})
    pq.write_table(table, path, row_group_size=2)  # three row groups
    return path


def test_parquet_text_matches_jsonl_row_for_row(models, text_parquet, tmp_path):
    source = open_source(text_parquet, column="body", label_column="y", id_column="key")
    listing = source.scan()
    assert source.kind == "text" and listing.ids == tuple("vwxyz")
    assert listing.labels == ("a", "b", "a", "b", "a")
    assert [source.read(i) for i in (4, 0, 3)] == [TEXTS[4], TEXTS[0], TEXTS[3]]
    assert listing.digests[1] == hashlib.sha256(TEXTS[1].encode()).hexdigest()
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                             for t, y in zip(TEXTS, listing.labels)))  # fmt: skip
    a = extract(models["text"], text_parquet, tmp_path / "p.h5", progress=False,
                column="body", label_column="y", batch_size=2)  # fmt: skip
    b = extract(models["text"], jsonl, tmp_path / "j.h5", progress=False, batch_size=2)
    assert a.n_computed == b.n_computed == 5
    with FeatureStore(tmp_path / "p.h5") as fp, FeatureStore(tmp_path / "j.h5") as fj:
        assert fp.ids().tolist() == [str(i) for i in range(5)]  # row numbers without --id-column
        np.testing.assert_array_equal(fp.features(), fj.features())
        assert fp.label_names == fj.label_names and (fp.labels() == fj.labels()).all()


def test_image_bytes_paths_feather_and_parts_give_one_content(models, tmp_path):
    images = [_png(i) for i in range(4)]
    (tmp_path / "img").mkdir()
    for i, data in enumerate(images):
        (tmp_path / "img" / f"{i}.png").write_bytes(data)
    labels = ["cat", "dog", "cat", "dog"]
    pq.write_table(pa.table({"image": images, "label": labels}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"path": [f"img/{i}.png" for i in range(4)], "label": labels}),
                   tmp_path / "p.parquet")  # fmt: skip
    feather.write_feather(pa.table({"image": images, "label": labels}), tmp_path / "b.feather")
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pa.table({"image": images[:3], "label": labels[:3]}), parts / "a.parquet")
    pq.write_table(pa.table({"image": images[3:], "label": labels[3:]}), parts / "b.parquet")
    digests = {}
    for name in ("b.parquet", "p.parquet", "b.feather", "parts"):
        out = tmp_path / f"{name}.h5"
        summary = extract(models["image"], tmp_path / name, out, progress=False)
        assert summary.n_computed == 4, name
        with FeatureStore(out) as fs:
            digests[name] = fs.features("pool")
            assert fs.label_names == ["cat", "dog"]
            if name == "parts":
                assert fs.ids().tolist() == ["a.parquet:0", "a.parquet:1", "a.parquet:2",
                                             "b.parquet:0"]  # fmt: skip
    for name in ("p.parquet", "b.feather", "parts"):
        np.testing.assert_array_equal(digests[name], digests["b.parquet"])


def test_hugging_face_saved_folders_and_objects(models, tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, -1, 0]}, features=features)
    ds.save_to_disk(tmp_path / "saved")
    datasets.DatasetDict({"train": ds, "validation": ds.select([0, 1])}).save_to_disk(
        tmp_path / "dict"
    )
    ds.save_to_disk(tmp_path / "two", num_shards=2)  # two arrow files, rows numbered across
    two = open_source(tmp_path / "two")
    assert two.scan().ids == tuple("01234") and [two.read(i) for i in range(5)] == TEXTS
    listing = open_source(tmp_path / "saved").scan()
    assert listing.labels == ("pos", "neg", "pos", None, "neg")
    assert listing.label_order == ("neg", "pos")
    split = open_source(tmp_path / "dict").scan()
    assert split.ids[-2:] == ("validation/0", "validation/1") and split.splits[-1] == "val"
    shuffled = ds.shuffle(seed=0)  # an indices mapping: rows in the shuffled order
    source = open_source(shuffled)
    assert [source.read(i) for i in range(5)] == shuffled["text"]
    extract(models["text"], tmp_path / "saved", tmp_path / "a.h5", progress=False)
    summary = extract(models["text"], ds, tmp_path / "a.h5", progress=False)
    assert (summary.n_computed, summary.n_cached) == (0, 5)  # same ids, same content
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"text": TEXTS, "label": ["neg", "pos", "pos", None, "neg"]})
    summary = extract(models["text"], frame, tmp_path / "a.h5", progress=False)
    assert (summary.n_computed, summary.n_cached, summary.n_relabelled) == (0, 5, 2)  # rows 0 and 1


def test_hub_names_and_streaming_datasets_are_refused(models, tmp_path, capfd):
    with pytest.raises(UserInputError, match=r"imdb: no such .* local data only.*save_to_disk"):
        open_source("imdb")
    result = cli(capfd, "extract", models["text"], "stanfordnlp/imdb", "--out", tmp_path / "f.h5")
    _one_line_error(result, "stanfordnlp/imdb", "save_to_disk")
    with pytest.raises(UserInputError, match="cannot read a builtins.dict as a source"):
        open_source({"text": TEXTS})


def test_missing_and_mistyped_columns(models, text_parquet, tmp_path, capfd):
    result = cli(capfd, "extract", models["text"], text_parquet, "--out", tmp_path / "f.h5")
    _one_line_error(result, "t.parquet: no text/image/path column; pass --column", "body, y, key")
    result = cli(capfd, "extract", models["text"], text_parquet, "--column", "body",
                     "--label-column", "stars", "--out", tmp_path / "f.h5")  # fmt: skip
    _one_line_error(result, "no column 'stars' for --label-column; columns: body, y, key")
    pq.write_table(pa.table({"text": [[1.0, 2.0]]}), tmp_path / "l.parquet")
    result = cli(
        capfd, "extract", models["text"], tmp_path / "l.parquet", "--out", tmp_path / "f.h5"
    )
    _one_line_error(result, "column 'text' holds list<", "--column")
    pq.write_table(pa.table({"text": TEXTS[:2], "id": ["a", None]}), tmp_path / "i.parquet")
    result = cli(
        capfd, "extract", models["text"], tmp_path / "i.parquet", "--out", tmp_path / "f.h5"
    )
    _one_line_error(result, "i.parquet: row 1: empty id")
    assert not (tmp_path / "f.h5").exists()


def test_corrupt_files(models, text_parquet, tmp_path, capfd):
    data = text_parquet.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    result = cli(
        capfd, "extract", models["text"], tmp_path / "cut.parquet", "--out", tmp_path / "f.h5"
    )
    _one_line_error(result, "cut.parquet: not a readable Parquet file", "re-write it")
    (tmp_path / "x.arrow").write_bytes(b"ARROW1 but not really")
    result = cli(capfd, "extract", models["text"], tmp_path / "x.arrow", "--out", tmp_path / "f.h5")
    _one_line_error(result, "x.arrow: not a readable Arrow IPC/Feather file")
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "state.json").write_text("{not json")
    result = cli(capfd, "extract", models["text"], tmp_path / "h", "--out", tmp_path / "f.h5")
    _one_line_error(result, "state.json: not readable JSON")
    assert not (tmp_path / "f.h5").exists()


def test_null_text_and_undecodable_image_commit_nothing(models, tmp_path, capfd):
    pq.write_table(pa.table({"text": TEXTS[:2]}), tmp_path / "ok.parquet")
    out = tmp_path / "f.h5"
    extract(models["text"], tmp_path / "ok.parquet", out, progress=False)
    before = _sha(out)
    pq.write_table(pa.table({"text": [*TEXTS[:2], None, TEXTS[3]]}), tmp_path / "n.parquet",
                   row_group_size=2)  # fmt: skip
    result = cli(capfd, "extract", models["text"], tmp_path / "n.parquet", "--out", out)
    _one_line_error(result, "n.parquet: row 2 ('text'): empty text", "--skip-bad")
    assert _sha(out) == before
    pq.write_table(pa.table({"image": [_png(0), b"\x89PNG broken", None]}), tmp_path / "i.parquet")
    img = tmp_path / "i.h5"
    result = cli(capfd, "extract", models["image"], tmp_path / "i.parquet", "--out", img)
    _one_line_error(result, "i.parquet: row 1 ('image'): cannot decode image", "--skip-bad")
    assert not img.exists()
    result = cli(
        capfd, "extract", models["image"], tmp_path / "i.parquet", "--out", img, "--skip-bad"
    )
    assert result.returncode == 0, result.stderr
    with FeatureStore(img) as fs:
        assert len(fs) == 1 and {b["id"] for b in fs.bad_items()} == {"1", "2"}
        reasons = sorted(b["reason"] for b in fs.bad_items())
        assert "null" in reasons[-1] or "null" in reasons[0]


def test_reads_row_groups_not_the_whole_file(tmp_path):
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": [f"text {i}" for i in range(1000)]}), path,
                   row_group_size=100)  # fmt: skip
    source = open_source(path)
    source.scan()
    assert len(source._cache) <= 8  # decoded batches kept: a few row groups, not ten
    assert source.read(999) == "text 999" and source.read(0) == "text 0"


def test_sources_pickle_for_ray_actors(text_parquet, tmp_path):
    feather.write_feather(pa.table({"text": TEXTS}), tmp_path / "t.feather")
    pandas = pytest.importorskip("pandas")
    for source in (open_source(text_parquet, column="body"), open_source(tmp_path / "t.feather"),
                   open_source(pandas.DataFrame({"text": TEXTS}))):  # fmt: skip
        source.scan()
        copy = pickle.loads(pickle.dumps(source))
        assert [copy.read(i) for i in range(5)] == TEXTS
