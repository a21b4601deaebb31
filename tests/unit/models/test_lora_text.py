"""LoRA fine-tuned MiniLM: adapters equal the base at init, merge, artifact round trip,
serving shapes and refusals. A tiny random 384-wide BERT stands in for the packaged MiniLM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from models.device import checkpoint_version
from models.heads import MODERATION_HEAD_LABELS, SENTIMENT_HEAD_LABELS
from models.lora_text import (
    LORA_CONFIG_FILENAME,
    LORA_WEIGHTS_FILENAME,
    LoRALinear,
    LoraModerator,
    LoraSentiment,
    LoraTextConfig,
    build_model,
    load_lora_model,
    save_lora_model,
    trainable_state,
)
from models.sentiment import SentimentScores
from tests.fixtures.tiny_checkpoints import build_tiny_minilm_base

TEXTS = ["have a lovely day", "you are a stupid idiot", "the food was awful", "ok"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_minilm_base(tmp_path_factory.mktemp("tiny-minilm"))


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core box, 2 threads spin-wait on each other and a
    tiny model's step takes ~20x longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(base: Path, task: str = "moderation", **overrides: object) -> LoraTextConfig:
    labels = MODERATION_HEAD_LABELS if task == "moderation" else SENTIMENT_HEAD_LABELS
    fields: dict[str, object] = {
        "task": task,
        "labels": labels,
        "rank": 4,
        "base_version": checkpoint_version(base),
        "max_length": 16,
    }
    fields.update(overrides)
    return LoraTextConfig(**fields)  # type: ignore[arg-type]


def _perturb_adapters(model: nn.Module, seed: int = 1) -> None:
    """Give every B (zero at init) random values, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("lora_b"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)


def _encode(tokenizer: object, texts: list[str]) -> dict[str, torch.Tensor]:
    encoded = tokenizer(texts, padding=True, return_tensors="pt")  # type: ignore[operator]
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def test_lora_linear_equals_base_at_init_and_merge_keeps_outputs() -> None:
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    layer = LoRALinear(base, rank=3, alpha=6.0)
    x = torch.randn(5, 12)
    assert torch.equal(layer(x), base(x))  # B is zero at init
    assert not base.weight.requires_grad
    assert layer.lora_a.requires_grad and layer.lora_b.requires_grad
    with torch.no_grad():
        layer.lora_b.normal_()
    adapted = layer(x)
    assert not torch.allclose(adapted, base(x))
    expected = base(x) + (x @ layer.lora_a.t() @ layer.lora_b.t()) * 2.0
    torch.testing.assert_close(adapted, expected)
    layer.merge()
    torch.testing.assert_close(layer(x), adapted, rtol=1e-5, atol=1e-5)


def test_untrained_model_encodes_like_the_base_encoder(base_dir: Path) -> None:
    from transformers import AutoModel

    tokenizer, model = build_model(_config(base_dir), base_dir)
    plain = AutoModel.from_pretrained(base_dir, local_files_only=True).eval()
    model.eval()
    inputs = _encode(tokenizer, TEXTS)
    with torch.no_grad():
        hidden = plain(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        expected = (hidden * mask).sum(1) / mask.sum(1)
        torch.testing.assert_close(model.embed(**inputs), expected)
    # Every attention linear layer of both layers got an adapter; nothing else trains.
    assert len(list(model.adapters())) == 2 * 4
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(trainable_state(model))
    assert all("lora_" in name or name.startswith("head.") for name in trainable)


def test_targets_layers_and_layer_norms_choose_what_trains(base_dir: Path) -> None:
    config = _config(
        base_dir, targets=("value", "output.dense"), layers=(1,), train_layer_norms=True
    )
    _, model = build_model(config, base_dir)
    names = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    assert names == [
        "encoder.encoder.layer.1.attention.self.value",
        "encoder.encoder.layer.1.output.dense",
    ]
    assert any("LayerNorm" in name for name in trainable_state(model))


def test_save_load_round_trip_gives_the_same_probabilities(base_dir: Path, tmp_path: Path) -> None:
    config = _config(base_dir, features=("embedding", "profanity"), hidden_dim=8)
    tokenizer, model = build_model(config, base_dir)
    _perturb_adapters(model)
    model.eval()
    save_lora_model(tmp_path / "artifact", model, metrics={"macro_auc": 0.9})
    # Only the trained values are stored, not the base encoder.
    stored = torch.load(tmp_path / "artifact" / LORA_WEIGHTS_FILENAME, weights_only=True)
    assert set(stored) == set(trainable_state(model))
    assert not any(name.endswith("base.weight") for name in stored)

    _, reloaded, metrics = load_lora_model(tmp_path / "artifact", base_dir)
    assert metrics == {"macro_auc": 0.9}
    assert reloaded.config == config
    reloaded.eval()
    inputs = _encode(tokenizer, TEXTS)
    extra = torch.zeros(len(TEXTS), 2)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs, extra=extra), model(**inputs, extra=extra))

    # The serving class merges the adapters: same probabilities as the unmerged model.
    served = LoraModerator.load(tmp_path / "artifact", device="cpu", base_dir=base_dir)
    with torch.no_grad():
        from models.lora_text import extra_features

        expected = model.probabilities(
            model(**inputs, extra=torch.from_numpy(extra_features(config, TEXTS, None)))
        )
    rows = served.probabilities(TEXTS)
    torch.testing.assert_close(torch.tensor(rows), expected, rtol=1e-4, atol=1e-5)


def test_predict_batch_gives_one_result_per_text(base_dir: Path, tmp_path: Path) -> None:
    _, moderation = build_model(_config(base_dir), base_dir)
    save_lora_model(tmp_path / "moderation", moderation, version="lora-moderation/1")
    moderator = LoraModerator.load(tmp_path / "moderation", device="cpu", base_dir=base_dir)
    moderator.batch_size = 3  # two batches for four texts
    results = moderator.predict_batch(TEXTS)
    assert len(results) == len(TEXTS)
    assert all(set(row) == set(MODERATION_HEAD_LABELS) for row in results)
    assert all(0.0 <= value <= 1.0 for row in results for value in row.values())
    assert moderator.predict_batch([]) == []
    assert moderator.info.version == "lora-moderation/1"
    assert moderator.info.labels == MODERATION_HEAD_LABELS
    # Order and batching do not change a text's answer.
    assert moderator.predict_batch(TEXTS[::-1])[0] == pytest.approx(results[-1])

    _, sentiment = build_model(_config(base_dir, "sentiment"), base_dir)
    save_lora_model(tmp_path / "sentiment", sentiment)
    analyser = LoraSentiment.load(tmp_path / "sentiment", device="cpu", base_dir=base_dir)
    answers = analyser.predict_batch(TEXTS)
    assert len(answers) == len(TEXTS)
    assert all(isinstance(answer, SentimentScores) for answer in answers)
    assert all(answer.label in SENTIMENT_HEAD_LABELS for answer in answers)


def test_bad_input_and_bad_artifacts_are_refused(base_dir: Path, tmp_path: Path) -> None:
    _, model = build_model(_config(base_dir), base_dir)
    directory = save_lora_model(tmp_path / "artifact", model)
    moderator = LoraModerator.load(directory, device="cpu", base_dir=base_dir)
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        moderator.predict_batch(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="moderation model; this class needs a sentiment"):
        LoraSentiment.load(directory, device="cpu", base_dir=base_dir)
    with pytest.raises(FileNotFoundError, match="lora_config.json"):
        LoraModerator.load(tmp_path, device="cpu", base_dir=base_dir)

    # Adapters trained on another base are refused, naming both versions.
    config_path = directory / LORA_CONFIG_FILENAME
    raw = json.loads(config_path.read_text())
    raw["base_version"] = "0123456789ab"
    config_path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="'0123456789ab'"):
        LoraModerator.load(directory, device="cpu", base_dir=base_dir)

    # Weights that do not fit the config (another rank) are refused.
    raw["base_version"] = checkpoint_version(base_dir)
    raw["rank"] = 2
    config_path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="does not (match|fit)"):
        LoraModerator.load(directory, device="cpu", base_dir=base_dir)
    raw["surprise"] = 1
    config_path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="unknown keys"):
        LoraModerator.load(directory, device="cpu", base_dir=base_dir)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"labels": ("positive", "negative", "neutral")}, "labels"),
        ({"rank": 0}, "rank"),
        ({"targets": ("pooler",)}, "targets"),
        ({"features": ("profanity",)}, "features"),
        ({"max_length": 4}, "max_length"),
    ],
)
def test_config_refuses_bad_values(
    base_dir: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _config(base_dir, **overrides)
