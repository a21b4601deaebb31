"""Moderation models, device resolution and checkpoint versioning (CPU, tiny checkpoints)."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import pytest
import torch

from models.answers import ModelInfo
from models.device import checkpoint_version, resolve_device
from models.moderation import (
    ProfanityModerator,
    TransformerModerator,
)
from tests.fixtures.tiny_checkpoints import build_tiny_bert_multilabel

# Tiny checkpoints have 64 positions: a 64-token window with 8 tokens of overlap.
STRIDE = 8
LONG_TEXT = "hello world " * 100 + "you are a stupid idiot"
MIXED_TEXTS = [
    "have a lovely day",
    LONG_TEXT,
    "",
    "you are an idiot",
    "the river is near the old school " * 12,
    "thanks!",
]


@pytest.fixture(scope="module")
def profanity() -> ProfanityModerator:
    return ProfanityModerator.load()


@pytest.fixture(scope="module")
def moderator(tiny_moderation_checkpoint: Path) -> TransformerModerator:
    return TransformerModerator.load(tiny_moderation_checkpoint, device="cpu", stride=STRIDE)


def _direct_window_probabilities(model: TransformerModerator, text: str) -> torch.Tensor:
    """Sigmoid probabilities of each window of `text`, one unpadded model call per window.

    Independent of the chunking / padding / reduction code under test.
    """
    windows = model.preprocess([text])
    rows = []
    with torch.inference_mode():
        for i in range(len(windows)):
            inputs = {name: torch.tensor([values[i]]) for name, values in windows.features.items()}
            rows.append(torch.sigmoid(model.model(**inputs).logits[0]))
    return torch.stack(rows)


# --- alt-profanity-check ---------------------------------------------------------------


def test_profanity_scores_abuse_above_clean_text(profanity: ProfanityModerator) -> None:
    abusive, clean = profanity.predict_batch(["you are a fucking idiot", "have a lovely day"])
    assert set(abusive) == set(clean) == {"offensive"}
    assert abusive["offensive"] > 0.5 > clean["offensive"]


def test_profanity_keeps_input_order(profanity: ProfanityModerator) -> None:
    texts = ["have a lovely day", "you are a fucking idiot", "see you at lunch", "shit"]
    batch = profanity.predict_batch(texts)
    singles = [profanity.predict_batch([text])[0] for text in texts]
    got = [r["offensive"] for r in batch]
    assert got == pytest.approx([r["offensive"] for r in singles])
    # Abusive items sit at positions 1 and 3: a reordering would move the high scores.
    assert got[1] > 0.5 and got[3] > 0.5 and got[0] < 0.5 and got[2] < 0.5
    assert all(isinstance(r["offensive"], float) and 0.0 <= r["offensive"] <= 1.0 for r in batch)


def test_profanity_empty_batch_and_info(profanity: ProfanityModerator) -> None:
    assert profanity.predict_batch([]) == []
    assert profanity.info == ModelInfo(
        name="alt-profanity-check",
        version=metadata.version("alt-profanity-check"),
        device="cpu",
        labels=("offensive",),
    )


def test_non_string_input_names_the_item(profanity: ProfanityModerator) -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        profanity.predict_batch(["fine", 3])  # type: ignore[list-item]


# --- transformer moderator -------------------------------------------------------------


def test_labels_follow_id2label_order(
    moderator: TransformerModerator, tiny_moderation_checkpoint: Path
) -> None:
    config = json.loads((tiny_moderation_checkpoint / "config.json").read_text())
    expected = tuple(config["id2label"][str(i)] for i in range(len(config["id2label"])))
    assert moderator.info.labels == expected
    assert list(moderator.info.labels) != sorted(moderator.info.labels)
    result = moderator.predict_batch(["hello"])[0]
    assert list(result) == list(expected)


def test_custom_and_default_label_names(tmp_path: Path) -> None:
    custom = build_tiny_bert_multilabel(tmp_path / "custom", labels=("zeta", "alpha", "mid"))
    model = TransformerModerator.load(custom, stride=STRIDE, name="custom-toxicity")
    assert model.info.labels == ("zeta", "alpha", "mid")
    assert model.info.name == "custom-toxicity"
    generic = build_tiny_bert_multilabel(tmp_path / "generic", labels=("LABEL_0", "LABEL_1"))
    assert TransformerModerator.load(generic, stride=STRIDE).info.labels == (
        "LABEL_0",
        "LABEL_1",
    )


def test_logit_columns_map_to_their_labels(moderator: TransformerModerator) -> None:
    text = "you are an idiot"
    windows = moderator.preprocess([text])
    with torch.inference_mode():
        logits = moderator.model(
            **{k: torch.tensor(v) for k, v in windows.features.items()}
        ).logits[0]
    expected = dict(zip(moderator.info.labels, torch.sigmoid(logits).tolist(), strict=True))
    assert moderator.predict_batch([text])[0] == pytest.approx(expected, abs=1e-6)


def test_scores_are_probabilities(moderator: TransformerModerator) -> None:
    results = moderator.predict_batch(MIXED_TEXTS)
    assert len(results) == len(MIXED_TEXTS)
    for result in results:
        assert set(result) == set(moderator.info.labels)
        assert all(type(v) is float and 0.0 <= v <= 1.0 for v in result.values())


def test_batch_equals_one_by_one(moderator: TransformerModerator) -> None:
    batch = moderator.predict_batch(MIXED_TEXTS)
    singles = [moderator.predict_batch([text])[0] for text in MIXED_TEXTS]
    for got, want in zip(batch, singles, strict=True):
        assert got == pytest.approx(want, abs=1e-5)
    # Distinct texts must give distinct outputs, or the comparison above proves nothing.
    assert len({round(r["toxic"], 4) for r in batch}) >= 4


def test_small_forward_chunks_give_same_results(tiny_moderation_checkpoint: Path) -> None:
    chunked = TransformerModerator.load(
        tiny_moderation_checkpoint, stride=STRIDE, max_windows_per_forward=2
    )
    whole = TransformerModerator.load(tiny_moderation_checkpoint, stride=STRIDE)
    chunk_sizes: list[int] = []
    real_forward = chunked._forward

    def counting_forward(chunk: dict[str, torch.Tensor]) -> torch.Tensor:
        chunk_sizes.append(int(chunk["input_ids"].shape[0]))
        return real_forward(chunk)

    chunked._forward = counting_forward  # type: ignore[method-assign]
    got = chunked.predict_batch(MIXED_TEXTS)
    total_windows = len(chunked.preprocess(MIXED_TEXTS))
    assert max(chunk_sizes) <= 2
    assert sum(chunk_sizes) == total_windows > len(MIXED_TEXTS)
    for a, b in zip(got, whole.predict_batch(MIXED_TEXTS), strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_long_text_is_split_and_does_not_raise(moderator: TransformerModerator) -> None:
    windows = moderator.preprocess(["short", LONG_TEXT])
    counts = windows.windows_per_text()
    assert counts[0] == 1
    assert counts[1] > 1
    assert max(len(ids) for ids in windows.features["input_ids"]) == moderator.max_length == 64
    assert len(moderator.predict_batch([LONG_TEXT])) == 1


def test_long_text_takes_max_over_windows(moderator: TransformerModerator) -> None:
    per_window = _direct_window_probabilities(moderator, LONG_TEXT)
    assert per_window.shape[0] > 1
    expected = per_window.max(dim=0).values
    got = torch.tensor(list(moderator.predict_batch([LONG_TEXT])[0].values()))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # Not a truncation in disguise: some label's maximum comes from a later window.
    assert bool(torch.gt(per_window[1:].max(dim=0).values, per_window[0] + 1e-4).any())


def test_insult_at_the_end_of_a_long_post_is_seen(
    moderator: TransformerModerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    idiot_id = moderator.tokenizer.get_vocab()["idiot"]
    labels = len(moderator.info.labels)

    def keyword_forward(chunk: dict[str, torch.Tensor]) -> torch.Tensor:
        # Every label fires only for windows that contain "idiot".
        hit = (chunk["input_ids"] == idiot_id).any(dim=1, keepdim=True)
        return torch.where(hit, 8.0, -8.0).expand(-1, labels).float()

    monkeypatch.setattr(moderator, "_forward", keyword_forward)
    clean_long = "hello world " * 100
    results = moderator.predict_batch([clean_long + "you idiot", clean_long, "you idiot"])
    assert moderator.preprocess([clean_long + "you idiot"]).windows_per_text() == [4]
    assert all(v > 0.99 for v in results[0].values())
    assert all(v < 0.01 for v in results[1].values())
    assert all(v > 0.99 for v in results[2].values())


def test_postprocess_reduces_by_max_per_text(moderator: TransformerModerator) -> None:
    windows = moderator.preprocess(["a", "hello world " * 60])
    assert windows.sample_index == [0, 1, 1, 1]
    logits = torch.tensor(
        [[0.0] * 6, [-4.0] * 6, [4.0, -4.0, 0.0, 0.0, 0.0, 0.0], [-4.0, 4.0, 0.0, 0.0, 0.0, 0.0]]
    )
    first, second = moderator.postprocess(windows, logits)
    assert list(first.values()) == pytest.approx([0.5] * 6)
    sig = torch.sigmoid(torch.tensor(4.0)).item()
    assert list(second.values()) == pytest.approx([sig, sig, 0.5, 0.5, 0.5, 0.5])


def test_empty_batch_skips_the_model(
    moderator: TransformerModerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(_: dict[str, torch.Tensor]) -> torch.Tensor:
        raise AssertionError("the model must not be called for an empty batch")

    monkeypatch.setattr(moderator, "_forward", fail)
    assert moderator.predict_batch([]) == []


def test_model_runs_on_cpu(moderator: TransformerModerator) -> None:
    assert moderator.info.device == "cpu"
    assert moderator.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in moderator.model.parameters())
    assert not moderator.model.training


def test_info_describes_the_checkpoint(
    moderator: TransformerModerator, tiny_moderation_checkpoint: Path
) -> None:
    info = moderator.info.as_dict()
    assert info == {
        "name": tiny_moderation_checkpoint.name,
        "version": checkpoint_version(tiny_moderation_checkpoint),
        "device": "cpu",
        "labels": list(moderator.info.labels),
    }
    assert isinstance(info["labels"], list)


def test_missing_or_incomplete_checkpoint_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        TransformerModerator.load(missing)
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        TransformerModerator.load(a_file)
    with pytest.raises(FileNotFoundError, match="config.json"):
        TransformerModerator.load(tmp_path)


def test_bad_window_settings_raise_value_error(tiny_moderation_checkpoint: Path) -> None:
    # The default stride (64) does not fit a 64-token window; must be a clear error, not
    # a tokenizer panic.
    with pytest.raises(ValueError, match="stride=64"):
        TransformerModerator.load(tiny_moderation_checkpoint)
    with pytest.raises(ValueError, match="max_length=128 exceeds"):
        TransformerModerator.load(tiny_moderation_checkpoint, max_length=128, stride=STRIDE)
    with pytest.raises(ValueError, match="max_windows_per_forward=0"):
        TransformerModerator.load(
            tiny_moderation_checkpoint, stride=STRIDE, max_windows_per_forward=0
        )


def test_explicit_max_length_is_used(tiny_moderation_checkpoint: Path) -> None:
    model = TransformerModerator.load(tiny_moderation_checkpoint, max_length=32, stride=4)
    windows = model.preprocess([LONG_TEXT])
    assert max(len(ids) for ids in windows.features["input_ids"]) == 32
    assert len(model.predict_batch([LONG_TEXT])) == 1


# --- device and version helpers -------------------------------------------------------------


def test_resolve_device() -> None:
    expected_auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected_auto
    assert resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error path")
def test_cuda_without_cuda_is_a_clear_error() -> None:
    for value in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=r"'cuda.*\"auto\".*\"cpu\""):
            resolve_device(value)


def test_checkpoint_version(tmp_path: Path, tiny_moderation_checkpoint: Path) -> None:
    version = checkpoint_version(tiny_moderation_checkpoint)
    assert re.fullmatch(r"[0-9a-f]{12}", version)
    assert checkpoint_version(tiny_moderation_checkpoint) == version
    same = build_tiny_bert_multilabel(tmp_path / "same")
    other = build_tiny_bert_multilabel(tmp_path / "other", seed=1)
    assert checkpoint_version(same) == version
    assert checkpoint_version(other) != version
    (other / "VERSION").write_text("toxic-2024.06\n")
    assert checkpoint_version(other) == "toxic-2024.06"
    (same / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="weight files"):
        checkpoint_version(same)
