"""The heads that ship in the package: checksums verified at load, a tampered copy refused
(naming the file and the checksum it should have) with the embedded fallback serving instead,
and the real heads' answers on made-up sentences (no dataset text, no slurs)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from models.heads import HeadModerator, HeadSentiment
from models.moderation import ProfanityModerator
from models.sentiment import VaderSentiment
from models.shipped import (
    MANIFEST_FILENAME,
    MODEL_CARD_FILENAME,
    SHIPPED_HEADS,
    ShippedArtifactError,
    file_sha256,
    load_shipped_head,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from models.text_classifier import load_text_classifier, load_with_fallback

# Made-up sentences: contempt for a group without a slur, swearing at nobody, and neither.
HATEFUL = "People of that religion are vermin and should all be thrown out of our country."
PROFANE = "this fucking game is shit lol, lost again"
CLEAN = "Have a lovely day, the park looks beautiful this morning."
POSITIVE_REVIEW = "Wonderful little cafe: friendly staff, great coffee, I will come back."
NEGATIVE_REVIEW = "Terrible service, cold food and rude staff. A waste of money, never again."


@pytest.fixture(scope="module")
def moderation_head() -> HeadModerator:
    head = load_shipped_head("moderation", device="cpu")
    assert isinstance(head, HeadModerator)
    return head


def tampered_copy(tmp_path: Path, task: str = "moderation") -> tuple[Path, str]:
    """A copy of the shipped head with one byte of its weights changed; the expected sha256."""
    copy = tmp_path / f"{task}-head"
    shutil.copytree(SHIPPED_HEADS[task], copy)
    weights = copy / "head.pt"
    expected = file_sha256(weights)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return copy, expected


@pytest.mark.parametrize("task", ["moderation", "sentiment"])
def test_shipped_heads_carry_a_card_and_a_manifest_that_verifies(task: str) -> None:
    directory = SHIPPED_HEADS[task]
    listed = verify_manifest(directory)
    # Every file is listed (the card too), so what ships is what was checked.
    on_disk = {p.name for p in directory.iterdir() if p.is_file()} - {MANIFEST_FILENAME}
    assert set(listed) == on_disk
    assert {"head.pt", "head_config.json", MODEL_CARD_FILENAME} <= on_disk
    assert (directory / "head.pt").stat().st_size < 1_000_000, "small enough to commit"


def test_shipped_moderation_head_orders_hate_profanity_and_clean_text(
    moderation_head: HeadModerator,
) -> None:
    assert moderation_head.info.labels == ("hate_speech", "offensive")
    assert moderation_head.info.name == "heads-moderation"
    assert moderation_head.info.version.startswith("shipped-")
    hateful, profane, clean = moderation_head.predict_batch([HATEFUL, PROFANE, CLEAN])
    # hate_speech tells contempt for a group from mere swearing; both are offensive.
    assert hateful["hate_speech"] > profane["hate_speech"] > clean["hate_speech"]
    assert profane["offensive"] > 0.5 > clean["offensive"]
    assert hateful["offensive"] > clean["offensive"]


def test_shipped_sentiment_head_ranks_a_positive_review_above_a_negative_one() -> None:
    head = load_text_classifier("sentiment", "shipped", device="cpu")
    assert isinstance(head, HeadSentiment)
    good, bad = head.predict_batch([POSITIVE_REVIEW, NEGATIVE_REVIEW])
    assert good.label == "positive" and bad.label == "negative"
    assert good.scores.positive > bad.scores.positive


def test_a_tampered_copy_is_refused_naming_the_file_and_the_expected_checksum(
    tmp_path: Path,
) -> None:
    copy, expected = tampered_copy(tmp_path)
    with pytest.raises(ShippedArtifactError) as caught:
        load_shipped_head("moderation", device="cpu", directory=copy)
    message = str(caught.value)
    assert str(copy / "head.pt") in message and expected in message
    assert caught.value.expected_sha256 == expected
    assert caught.value.path == copy / "head.pt"


def test_missing_files_and_manifests_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "head"
    shutil.copytree(SHIPPED_HEADS["sentiment"], copy)
    expected = read_manifest(copy)["head_config.json"]
    (copy / "head_config.json").unlink()
    with pytest.raises(ShippedArtifactError, match=f"head_config.json.*missing.*{expected}"):
        verify_manifest(copy)
    (copy / MANIFEST_FILENAME).unlink()
    with pytest.raises(ShippedArtifactError, match="MANIFEST is missing"):
        verify_manifest(copy)
    # A manifest that leaves out a file the loader reads does not vouch for it.
    shutil.copyfile(SHIPPED_HEADS["sentiment"] / "head_config.json", copy / "head_config.json")
    write_manifest(copy)
    lines = (copy / MANIFEST_FILENAME).read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.endswith("  head.pt")]
    (copy / MANIFEST_FILENAME).write_text("\n".join(kept) + "\n", encoding="utf-8")
    with pytest.raises(ShippedArtifactError, match="head.pt.*does not list it"):
        verify_manifest(copy)


def test_a_refused_shipped_head_falls_back_to_the_embedded_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    moderation_copy, expected = tampered_copy(tmp_path, "moderation")
    sentiment_copy = tmp_path / "gone"  # a missing directory is refused the same way
    monkeypatch.setitem(SHIPPED_HEADS, "moderation", moderation_copy)
    monkeypatch.setitem(SHIPPED_HEADS, "sentiment", sentiment_copy)
    with caplog.at_level(logging.ERROR, logger="models.text_classifier"):
        moderation, reason = load_with_fallback("moderation", "shipped", device="cpu")
    assert isinstance(moderation, ProfanityModerator)
    assert reason is not None and "alt-profanity-check" in reason
    # The start-up log names the file and the checksum it should have.
    assert str(moderation_copy / "head.pt") in caplog.text and expected in caplog.text
    sentiment, reason = load_with_fallback("sentiment", "shipped", device="cpu")
    assert isinstance(sentiment, VaderSentiment) and reason is not None
    # Other kinds are not silently replaced: a broken checkpoint still fails the load.
    with pytest.raises(FileNotFoundError):
        load_with_fallback("moderation", "head", str(sentiment_copy), "cpu")
    assert load_with_fallback("moderation", "profanity")[1] is None
