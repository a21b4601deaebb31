"""Aspect sentiment: spans, pair and tag encoding, the artifact round trip, batching and
refusals on a tiny random 384-wide BERT (the real loading and batching code, in seconds);
then the shipped artifact on a clearly mixed sentence."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models.aspect_types import (
    AspectAnswer,
    AspectRequest,
    AspectResult,
    WindowVaderAspects,
    aspect_spans,
    term_window,
    topic_label,
)
from models.aspects import (
    ASPECT_WEIGHTS_FILENAME,
    SHIPPED_ASPECTS_DIR,
    TAG_LABELS,
    AspectConfig,
    AspectSentiment,
    build_aspect_model,
    decode_tags,
    encode_pairs,
    encode_tags,
    load_aspect_model,
    load_shipped_aspects,
    save_aspect_model,
)
from models.device import checkpoint_version
from models.shipped import ShippedArtifactError, write_manifest
from tests.fixtures.tiny_checkpoints import build_tiny_minilm_base

MIXED = "The food was great but the service was awful."


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_minilm_base(tmp_path_factory.mktemp("tiny-minilm"))


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _artifact(base: Path, target: Path, seed: int = 1) -> Path:
    """A tiny trained-looking artifact: random adapters (B is zero at init) and heads."""
    config = AspectConfig(rank=2, max_length=32, base_version=checkpoint_version(base))
    _, model = build_aspect_model(config, base)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return save_aspect_model(target, model)


def test_spans_are_case_insensitive_whole_words_and_every_occurrence() -> None:
    text = "Food, seafood and FOOD again; the wine  list too"
    assert aspect_spans(text, "food") == [(0, 4), (18, 22)]
    assert aspect_spans(text, "wine list") == [(34, 44)], "any whitespace between words"
    assert aspect_spans(text, "list too") == [(40, 48)]
    assert aspect_spans(text, "pizza") == [] and aspect_spans(text, "  ") == []
    assert aspect_spans("(c++) rocks", "c++") == [(1, 4)], "regex characters are literal"
    assert term_window("one two three four five", (8, 13), 1) == "two three four"


def test_pairs_pool_the_aspect_tokens_and_fall_back_to_the_query(base_dir: Path) -> None:
    config = AspectConfig(rank=2, max_length=32, base_version=checkpoint_version(base_dir))
    tokenizer, _ = build_aspect_model(config, base_dir)
    batch = encode_pairs(
        tokenizer, [MIXED, MIXED], ["food", "staff"], [aspect_spans(MIXED, "food"), []], 32
    )
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in batch.input_ids.tolist()]
    # The tiny vocabulary splits words into pieces: join them back.
    marked = [
        "".join(t.removeprefix("##") for t, m in zip(row, mask, strict=True) if m)
        for row, mask in zip(tokens, batch.target_mask.tolist(), strict=True)
    ]
    assert marked[0] == "food", "the occurrence in the text, not the query"
    assert marked[1] == "staff", "no span: the query's own tokens"
    assert batch.token_type_ids[1].max().item() == 1, "the query is the second segment"

    inputs, targets, offsets = encode_tags(tokenizer, [MIXED], [[(4, 8), (27, 34)]], 32)
    tags = targets[0].tolist()
    assert tags[0] == -100 and tags.count(TAG_LABELS.index("B")) == 2
    mask = [int(end > start) for start, end in offsets[0]]
    decoded = decode_tags([max(t, 0) for t in tags], offsets[0], mask)
    assert decoded == [(4, 8), (27, 34)]
    assert inputs["input_ids"].shape == targets.shape


def test_decode_tags_joins_runs_and_starts_a_term_at_a_stray_inside_tag() -> None:
    offsets = [(0, 0), (0, 3), (4, 8), (9, 12), (13, 15), (0, 0)]
    mask = [0, 1, 1, 1, 1, 0]
    b, i, o = (TAG_LABELS.index(name) for name in "BIO")
    assert decode_tags([o, b, i, o, i, o], offsets, mask) == [(0, 8), (13, 15)]
    assert decode_tags([b, b, b, b, b, b], offsets, mask) == [(0, 3), (4, 8), (9, 12), (13, 15)]


def test_round_trip_batching_and_one_answer_per_request(base_dir: Path, tmp_path: Path) -> None:
    directory = _artifact(base_dir, tmp_path / "artifact")
    model = AspectSentiment.load(directory, device="cpu", base_dir=base_dir)
    model.batch_size = 2  # several model batches per call
    requests = [
        AspectRequest(MIXED, aspects=("food", "service", "wine")),
        AspectRequest(MIXED, categories=("food", "price")),
        AspectRequest("the pasta was lovely"),
        AspectRequest("FOOD and more food", aspects=("food",)),
    ]
    answers = model.predict_batch(requests)
    assert [a.mode for a in answers] == ["given", "categories", "extracted", "given"]
    food, service, wine = answers[0].aspects
    assert food.found and food.spans == ((4, 8),) and food.label in model.info.labels
    assert food.scores is not None and abs(sum(food.scores.values()) - 1) < 1e-5
    assert service.spans == ((27, 34),)
    assert wine == AspectResult("wine", False), "absent: no label, never a guess"
    assert [c.category for c in answers[1].categories] == ["food", "price"]
    assert answers[3].aspects[0].spans == ((0, 4), (14, 18))
    for term in answers[2].aspects:
        assert term.found, "an extracted term occurs in the text"
    # Alone or in a batch, the same scores (padding does not leak into the pooling).
    alone = model.predict_batch([requests[0]])[0].aspects[0].scores
    assert alone is not None and food.scores is not None
    assert alone == pytest.approx(food.scores, abs=1e-5)
    # The unmerged model (as training scores it) answers what the merged one (serving) does.
    tokenizer, unmerged = load_aspect_model(directory, base_dir)
    training_view = AspectSentiment(tokenizer, unmerged.eval(), torch.device("cpu"), "t")
    again = training_view.predict_batch([requests[0]])[0].aspects[0].scores
    assert again is not None and again == pytest.approx(food.scores, abs=1e-4)
    assert model.predict_batch([]) == []


def test_bad_requests_and_bad_artifacts_are_refused(base_dir: Path, tmp_path: Path) -> None:
    directory = _artifact(base_dir, tmp_path / "artifact")
    model = AspectSentiment.load(directory, device="cpu", base_dir=base_dir)
    with pytest.raises(ValueError, match="both aspects and categories"):
        model.predict_batch([AspectRequest("x", aspects=("x",), categories=("food",))])
    with pytest.raises(ValueError, match="unknown"):
        model.predict_batch([AspectRequest("x", categories=("parking",))])
    with pytest.raises(ValueError, match="empty aspect"):
        model.predict_batch([AspectRequest("x", aspects=(" ",))])
    with pytest.raises(TypeError, match="AspectRequest"):
        model.predict_batch(["just text"])  # type: ignore[list-item]

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="aspect_config.json"):
        AspectSentiment.load(tmp_path / "empty", device="cpu", base_dir=base_dir)
    broken = tmp_path / "broken"
    shutil.copytree(directory, broken)
    torch.save({"nothing": torch.zeros(1)}, broken / ASPECT_WEIGHTS_FILENAME)
    with pytest.raises(ValueError, match="does not match"):
        AspectSentiment.load(broken, device="cpu", base_dir=base_dir)
    with pytest.raises(ValueError, match="labels"):
        AspectConfig(labels=("good", "bad", "meh"))


def test_a_shipped_copy_is_checked_against_its_manifest(base_dir: Path, tmp_path: Path) -> None:
    directory = _artifact(base_dir, tmp_path / "shipped")
    write_manifest(directory)
    model = load_shipped_aspects("cpu", directory, base_dir)
    assert model.info.version.startswith("shipped-")
    with (directory / ASPECT_WEIGHTS_FILENAME).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ShippedArtifactError, match="aspect_weights.pt"):
        load_shipped_aspects("cpu", directory, base_dir)
    with pytest.raises(FileNotFoundError, match="pipelines.finetune_aspects"):
        load_shipped_aspects("cpu", tmp_path / "nothing-here", base_dir)


def test_the_vader_window_fallback_answers_in_the_same_shape() -> None:
    fallback = WindowVaderAspects.load()
    given, categories, extracted = fallback.predict_batch(
        [
            AspectRequest(MIXED, aspects=("food", "service", "wine")),
            AspectRequest(MIXED, categories=("food",)),
            AspectRequest(MIXED),
        ]
    )
    labels = [(a.aspect, a.found, a.label) for a in given.aspects]
    assert labels == [
        ("food", True, "positive"),
        ("service", True, "negative"),
        ("wine", False, None),
    ]
    assert categories.mode == "categories" and len(categories.categories) == 1
    assert extracted == AspectAnswer("extracted"), "no tagger: no terms, never invented"


def test_topic_label_is_the_majority_of_the_found_terms() -> None:
    positive = {"positive": 0.7, "negative": 0.2, "neutral": 0.1}
    negative = {"positive": 0.0, "negative": 0.6, "neutral": 0.4}

    def found(label: str, scores: dict[str, float]) -> AspectResult:
        return AspectResult("t", True, ((0, 1),), label, scores)

    missing = AspectResult("c", False)
    two_to_one = (
        found("negative", negative),
        found("positive", positive),
        found("negative", negative),
    )
    assert topic_label(AspectAnswer("given", aspects=(*two_to_one, missing))) == "negative"
    tie = (found("negative", negative), found("positive", positive))
    assert topic_label(AspectAnswer("given", aspects=tie)) == "positive", "0.7 beats 0.6"
    assert topic_label(AspectAnswer("given", aspects=(missing,))) is None


@pytest.mark.skipif(
    not (SHIPPED_ASPECTS_DIR / "MANIFEST").is_file(), reason="no shipped aspect artifact"
)
def test_the_shipped_model_labels_each_aspect_of_a_mixed_sentence() -> None:
    model = load_shipped_aspects("cpu")
    answers = model.predict_batch(
        [
            AspectRequest(MIXED, aspects=("food", "service")),
            AspectRequest(
                "The staff were rude, but the dessert was delicious.", ("staff", "dessert")
            ),
        ]
    )
    labels = [[(a.aspect, a.label) for a in answer.aspects] for answer in answers]
    assert labels == [
        [("food", "positive"), ("service", "negative")],
        [("staff", "negative"), ("dessert", "positive")],
    ]
