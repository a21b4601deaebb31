"""The aspect-sentiment job without Ray: MAMS XML reading and its refusals, the split, the
multi-task loop on a tiny 384-wide base, the tagger's F1 and the baselines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from configs.pipelines import AspectJobConfig, load_aspect_job_config
from models.aspects import AspectConfig, build_aspect_model
from models.device import checkpoint_version
from pipelines.finetune_aspects import (
    MamsSentence,
    TaskRows,
    aspect_baselines,
    evaluate_sentences,
    fit_aspects,
    read_mams,
    split_sentences,
    term_f1,
)
from tests.fixtures.tiny_checkpoints import build_tiny_minilm_base

REPO = Path(__file__).resolve().parents[3]
TERMS_XML = """<?xml version="1.0" encoding="utf-8"?>
<sentences>
  <sentence><text>The food was great but the service was awful.</text><aspectTerms>
    <aspectTerm from="4" to="8" term="food" polarity="positive"/>
    <aspectTerm from="27" to="34" term="service" polarity="negative"/>
  </aspectTerms></sentence>
  <sentence><text>We sat at a table and the waiter was lovely.</text><aspectTerms>
    <aspectTerm from="12" to="17" term="table" polarity="neutral"/>
    <aspectTerm from="26" to="32" term="waiter" polarity="positive"/>
  </aspectTerms></sentence>
  <sentence><text>No aspects here.</text></sentence>
</sentences>
"""
CATEGORIES_XML = """<?xml version="1.0" encoding="utf-8"?>
<sentences>
  <sentence><text>Cheap and tasty, but the room was loud.</text><aspectCategories>
    <aspectCategory category="price" polarity="positive"/>
    <aspectCategory category="ambience" polarity="negative"/>
  </aspectCategories></sentence>
</sentences>
"""
WORDS = {
    "positive": ["great", "lovely", "wonderful"],
    "negative": ["awful", "terrible", "bad"],
    "neutral": ["here", "there", "today"],
}
LABELS = ("positive", "negative", "neutral")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _job(**overrides: Any) -> AspectJobConfig:
    fields: dict[str, Any] = {
        "term_data_path": "unused.xml",
        "mlflow": {"registered_model_name": "aspects-test"},
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 0.01,
        "head_learning_rate": 0.05,
        "eval_every_steps": 4,
        "early_stopping_patience": 50,
        "warmup_fraction": 0.0,
        "max_length": 32,
    }
    fields.update(overrides)
    return AspectJobConfig.model_validate(fields)


def _synthetic(count: int, seed: int) -> list[MamsSentence]:
    """'the <x> was <word> but the <y> was <word>': each term labelled by its own word."""
    import numpy as np

    from pipelines.finetune_aspects import AspectRow

    rng = np.random.default_rng(seed)
    sentences = []
    for _ in range(count):
        first, second = rng.choice(LABELS, size=2)
        a, b = str(rng.choice(WORDS[first])), str(rng.choice(WORDS[second]))
        text = f"the food was {a} but the service was {b}"
        rows = (
            AspectRow("food", LABELS.index(first), (4, 8)),
            AspectRow(
                "service", LABELS.index(second), (text.index("service"), text.index("service") + 7)
            ),
        )
        sentences.append(MamsSentence(text, rows))
    return sentences


def test_mams_files_are_read_with_offsets_and_refused_when_wrong(tmp_path: Path) -> None:
    sentences = read_mams(_write(tmp_path, "t.xml", TERMS_XML), "terms")
    assert len(sentences) == 2, "sentences without aspects are left out"
    food, service = sentences[0].aspects
    assert (food.query, food.label, food.span) == ("food", 0, (4, 8))
    assert (service.query, service.label) == ("service", 1)
    categories = read_mams(_write(tmp_path, "c.xml", CATEGORIES_XML), "categories")
    assert [(r.query, r.label, r.span) for r in categories[0].aspects] == [
        ("price", 0, None),
        ("ambience", 1, None),
    ]
    bad_offsets = TERMS_XML.replace('from="4" to="8"', 'from="5" to="8"')
    with pytest.raises(ValueError, match="offsets 5-8"):
        read_mams(_write(tmp_path, "b1.xml", bad_offsets), "terms")
    with pytest.raises(ValueError, match="polarity 'conflict'"):
        read_mams(_write(tmp_path, "b2.xml", TERMS_XML.replace("neutral", "conflict")), "terms")
    with pytest.raises(ValueError, match="category 'parking'"):
        read_mams(
            _write(tmp_path, "b3.xml", CATEGORIES_XML.replace("price", "parking")), "categories"
        )
    with pytest.raises(ValueError, match="not a readable MAMS XML"):
        read_mams(_write(tmp_path, "b4.xml", "<sentences>"), "terms")


def test_the_split_is_seeded_and_disjoint() -> None:
    sentences = _synthetic(40, seed=0)
    train, validation = split_sentences(sentences, 0.25, seed=3)
    again = split_sentences(sentences, 0.25, seed=3)
    assert (train, validation) == again
    assert len(validation) == 10 and len(train) == 30
    assert not {id(s) for s in train} & {id(s) for s in validation}
    small, _ = split_sentences(sentences, 0.25, seed=3, limit=20)
    assert len(small) == 15


def test_term_f1_compares_distinct_terms_case_insensitively() -> None:
    scores = term_f1([["Food", "food", "wine"], []], [["food", "service"], ["staff"]])
    assert scores["tagger_precision"] == 0.5  # food right, wine wrong
    assert scores["tagger_recall"] == pytest.approx(1 / 3)
    assert scores["tagger_f1"] == pytest.approx(0.4)
    assert term_f1([[]], [[]])["tagger_f1"] == 0.0


def test_fit_aspects_learns_each_aspects_own_label_and_keeps_the_best(tmp_path: Path) -> None:
    base = build_tiny_minilm_base(tmp_path / "base")
    config = AspectConfig(rank=4, max_length=32, dropout=0.0, base_version=checkpoint_version(base))
    torch.manual_seed(0)  # the adapters' and heads' initial values
    tokenizer, model = build_aspect_model(config, base)
    train = TaskRows(_synthetic(48, seed=0), [])
    validation = TaskRows(_synthetic(16, seed=1), [])
    rows: list[tuple[dict[str, float], bool, bool]] = []
    job = _job(epochs=3, eval_every_steps=5, tag_fraction=0.5, learning_rate=0.003)
    result = fit_aspects(model, tokenizer, train, validation, job, lambda *a: rows.append(a))

    steps = [row["step"] for row, _, _ in rows]
    assert steps[-1] == 3 * 15, "12 term + 3 tag batches per epoch"
    assert result.history == [row for row, _, _ in rows]
    assert result.best_score > rows[0][0]["val_term_macro_f1"], "it learnt something"
    best = max(rows, key=lambda args: args[0]["val_term_macro_f1"])[0]
    assert result.best_score == best["val_term_macro_f1"] and result.best_step == best["step"]
    # The model holds the best state at the end.
    again = evaluate_sentences(model, tokenizer, validation)
    assert again["term_macro_f1"] == pytest.approx(result.best_score)
    # Above chance (1/3: each term's own word decides its label) and above the untrained
    # start. Not a fixed bar: the tiny random base's initial values move with transformers.
    assert again["term_accuracy"] > max(1 / 3, rows[0][0]["val_term_accuracy"])


def test_a_time_budget_stops_training_early(tmp_path: Path) -> None:
    base = build_tiny_minilm_base(tmp_path / "base")
    config = AspectConfig(rank=2, max_length=32, base_version=checkpoint_version(base))
    tokenizer, model = build_aspect_model(config, base)
    job = _job(epochs=5, max_train_s=1e-6, tag_fraction=0.0)
    result = fit_aspects(
        model, tokenizer, TaskRows(_synthetic(16, 0)), TaskRows(_synthetic(4, 1)), job
    )
    assert [row["step"] for row in result.history] == [1.0]


def test_baselines_pick_the_vader_window_on_validation() -> None:
    report = aspect_baselines(_synthetic(20, 0), _synthetic(10, 1), _synthetic(10, 2))
    assert report["majority_class"] in LABELS
    assert report["vader_window_half_width"] in report["vader_window_validation_macro_f1_by_width"]
    heldout = report["heldout"]
    assert heldout["rows"] == 20
    # The sentence-level label cannot tell the two aspects apart; the window can.
    assert heldout["vader_window"]["accuracy"] > heldout["vader_sentence"]["accuracy"]


def test_job_files_validate_and_bad_values_are_refused() -> None:
    config = load_aspect_job_config(REPO / "configs/pipelines/finetune_aspects.yaml")
    assert config.heldout_term_path and config.heldout_term_path.endswith("mams_atsa_val.xml")
    assert config.term_data_path.endswith("mams_atsa_train.xml")
    for overrides, field in (
        ({"lora_layers": [6]}, "lora_layers"),
        ({"category_fraction": 1.5}, "category_fraction"),
        ({"surprise": 1}, "surprise"),
    ):
        with pytest.raises(ValidationError, match=field):
            _job(**overrides)


def test_ship_aspects_copies_the_artifact_with_figures_and_a_manifest(tmp_path: Path) -> None:
    import json

    from models.aspects import load_shipped_aspects, save_aspect_model
    from pipelines.ship_aspects import ship_aspects

    base = build_tiny_minilm_base(tmp_path / "base")
    config = AspectConfig(rank=2, max_length=32, base_version=checkpoint_version(base))
    _, model = build_aspect_model(config, base)
    artifact = save_aspect_model(tmp_path / "run", model)
    report = tmp_path / "run.json"
    report.write_text(json.dumps({"run_name": "r1", "heldout_metrics": {"term_accuracy": 0.8}}))
    target = tmp_path / "shipped"
    ship_aspects(artifact, report, target)
    figures = json.loads((target / "figures.json").read_text())
    assert figures == {"run_name": "r1", "heldout_metrics": {"term_accuracy": 0.8}}
    assert "aspect_weights.pt" in (target / "MANIFEST").read_text()
    assert load_shipped_aspects("cpu", target, base).info.version.startswith("shipped-")
    with pytest.raises(FileNotFoundError, match="finetune_aspects run directory"):
        ship_aspects(tmp_path / "nothing", None, tmp_path / "other")
