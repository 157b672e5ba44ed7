"""Length bucketing of text: the plan, the padded feeds, source-order rows, resume after SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from embedkit.extract import extract, load_model
from embedkit.extract.batching import bucket_batches, fixed_batches, plan_batches
from embedkit.extract.preprocess import make_preprocessor
from embedkit.extract.providers import Runner
from embedkit.store import FeatureStore
from tests.extract.extract_graphs import (
    REPO,
    journaled_batches,
    make_slow_text_model,
    write_texts,
)

N_TEXTS, BATCH = 600, 8


def test_bucket_batches_cover_each_position_once_within_the_budget():
    lengths = np.random.default_rng(0).integers(1, 200, size=1000)
    batches = bucket_batches(lengths, token_budget=1024, window=300)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    for b in batches:
        assert (np.diff(b) > 0).all()  # source order inside a batch
        assert b[0] // 300 == b[-1] // 300  # never across a window
        assert len(b) == 1 or len(b) * lengths[b].max() <= 1024
    assert [b.tolist() for b in bucket_batches(lengths, 1024, 300)] == [
        b.tolist() for b in batches
    ]  # a pure function of the lengths
    padded = sum(len(b) * lengths[b].max() for b in batches)
    fixed = sum(len(b) * lengths[b].max() for b in fixed_batches(1000, 8))
    assert padded < 0.7 * fixed


def test_an_item_longer_than_the_budget_gets_a_batch_of_its_own():
    batches = bucket_batches(np.array([5, 50, 5]), token_budget=20)
    assert [b.tolist() for b in batches] == [[0, 2], [1]]
    with pytest.raises(ValueError):
        bucket_batches(np.array([1]), token_budget=0)


@pytest.fixture(scope="module")
def slow_text(tmp_path_factory):
    """A slow text model, texts of varied length, and the store of one uninterrupted run."""
    root = tmp_path_factory.mktemp("bucketing")
    model = make_slow_text_model(root / "slow_text.onnx")
    texts = write_texts(root / "texts.txt", N_TEXTS)
    reference = root / "reference.h5"
    extract(model, texts, reference, batch_size=BATCH, progress=False, device="cpu")
    with FeatureStore(reference) as fs:
        return root, model, texts, fs.ids(), fs.features()


def test_plan_tokenises_once_and_feeds_match_per_item_tokenisation(slow_text):
    _, model, texts_path, _, _ = slow_text
    texts = texts_path.read_text().splitlines()
    pre = make_preprocessor(load_model(model), "text", "texts")
    todo = np.arange(0, N_TEXTS, 2)  # every other item is already in the store
    plan = plan_batches(todo, BATCH, texts=[texts[i] for i in todo], pre=pre)
    assert sorted(np.concatenate(plan.batches).tolist()) == todo.tolist()
    rows = plan.batches[-1].tolist()
    feed = plan.feed(rows, pre)
    for k, i in enumerate(rows):
        single = pre.collate([texts[i]])
        n = single["input_ids"].shape[1]
        assert feed["input_ids"][k, :n].tolist() == single["input_ids"][0].tolist()
        assert feed["attention_mask"][k].sum() == n  # padding is masked out
    mean = plan.tokens.lengths.mean()
    widths = [plan.tokens.lengths[[plan.slot[i] for i in b]].max() for b in plan.batches]
    budget = BATCH * int(np.ceil(mean))
    assert all(len(b) * w <= budget or len(b) == 1 for b, w in zip(plan.batches, widths))


def test_tokenising_in_blocks_gives_the_one_call_table(slow_text, monkeypatch):
    from embedkit.extract import preprocess

    _, model, texts_path, _, _ = slow_text
    texts = texts_path.read_text().splitlines()
    pre = make_preprocessor(load_model(model), "text", "texts")
    whole = pre.tokenize(texts)
    monkeypatch.setattr(preprocess, "TOKENIZE_BLOCK", 7)  # blocks end mid-list
    blocks = pre.tokenize(texts)
    for name in ("ids", "type_ids", "offsets"):
        np.testing.assert_array_equal(getattr(blocks, name), getattr(whole, name))
    assert pre.tokenize([]).offsets.tolist() == [0]


def test_bucketed_store_is_in_source_order_and_matches_items_run_alone(slow_text):
    _, model, texts_path, ids, features = slow_text
    assert ids.tolist() == [str(i) for i in range(N_TEXTS)]  # rows in source order
    texts = texts_path.read_text().splitlines()
    pre = make_preprocessor(load_model(model), "text", "texts")
    runner = Runner(model, ["sentence"], device="cpu")
    for i in (0, 17, 301, N_TEXTS - 1):
        alone = runner.run(pre.collate([texts[i]]))["sentence"][0]
        np.testing.assert_allclose(features[i], alone, rtol=1e-5, atol=1e-6)


def test_store_from_shuffled_input_holds_the_same_rows(slow_text, tmp_path):
    _, model, texts_path, ids, features = slow_text
    lines = texts_path.read_text().splitlines()
    order = np.random.default_rng(1).permutation(N_TEXTS)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("".join(f'{{"id": "{i}", "text": "{lines[i]}"}}\n' for i in order))
    out = tmp_path / "s.h5"
    extract(model, shuffled, out, batch_size=BATCH, progress=False, device="cpu")
    with FeatureStore(out) as fs:
        assert fs.ids().tolist() == [str(i) for i in order]  # the shuffled file's order
        np.testing.assert_allclose(fs.features(), features[order], rtol=1e-5, atol=1e-6)


def test_killed_text_run_resumes_into_the_same_buckets_bit_identical(slow_text, tmp_path):
    root, model, texts, ids, features = slow_text
    out = tmp_path / "f.h5"
    args = [model, texts, "--out", out, "--batch-size", BATCH, "--device", "cpu"]
    command = [sys.executable, "-m", "embedkit", "extract", *map(str, args)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal, deadline, seen = tmp_path / "f.h5.d" / "journal", time.monotonic() + 240, 0
    while time.monotonic() < deadline and proc.poll() is None and seen < 10:
        seen = journaled_batches(journal)
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before 10 batches"
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    resumed = int(result.stdout.split(" resumed")[0].rsplit(" ", 1)[1])
    assert resumed > 0  # journaled buckets were not recomputed
    assert f"computed {N_TEXTS - resumed} items" in result.stdout
    with FeatureStore(out) as fs:
        assert np.array_equal(fs.ids(), ids)
        assert np.array_equal(fs.features(), features)  # bit for bit
    assert not journal.exists()
