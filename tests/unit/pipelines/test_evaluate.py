"""`python -m pipelines.evaluate`: metrics and bootstrap on toy cases, format detection, the
CLI on small synthetic files, and bad input (exit status 2, the argument named)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from models.sentiment import PolarityScores, SentimentScores
from pipelines.data import stratified_split
from pipelines.evaluate import (
    EvaluationError,
    auc,
    bootstrap,
    class_metrics,
    detect_format,
    main,
    moderation_report,
    sentiment_report,
)
from tests.fixtures.labelled_data import write_davidson_csv, write_vader_ground_truth


def test_auc_on_a_known_toy_case_and_against_scikit_learn() -> None:
    # Pairs (positive, negative): 0.35 beats 0.1 only, 0.8 beats both -> 3 of 4.
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auc(np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3])) != auc(
        np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3])
    )  # NaN: one class only
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, size=500)
    scores = np.round(rng.random(500) + truth * 0.3, 1)  # many ties
    assert auc(truth, scores) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)


def test_class_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, size=300)
    predicted = np.where(rng.random(300) < 0.7, truth, rng.integers(0, 3, size=300))
    predicted[predicted == 2] = 1  # a class never predicted: its F1 is 0
    got = class_metrics(truth, predicted, 3)
    assert got["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert got["macro_f1"] == pytest.approx(
        f1_score(truth, predicted, labels=[0, 1, 2], average="macro", zero_division=0)
    )


def test_bootstrap_is_seeded_and_brackets_the_value() -> None:
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, size=200)
    scores = rng.random(200) + truth * 0.5

    def metrics(rows: np.ndarray) -> dict[str, float]:
        return {"auc": auc(truth[rows], scores[rows])}

    first = bootstrap(metrics, 200, 100, seed=0)["auc"]
    assert first == bootstrap(metrics, 200, 100, seed=0)["auc"]
    assert first != bootstrap(metrics, 200, 100, seed=1)["auc"]
    assert first.low < first.value < first.high
    assert first.value == pytest.approx(roc_auc_score(truth, scores))
    # A perfect ranking stays perfect in every resample.
    perfect = bootstrap(lambda rows: {"auc": auc(truth[rows], truth[rows])}, 200, 50, 0)
    assert (perfect["auc"].value, perfect["auc"].low, perfect["auc"].high) == (1.0, 1.0, 1.0)
    # No resamples: the value, no interval.
    bare = bootstrap(metrics, 200, 0, seed=0)["auc"]
    assert bare.value == first.value and np.isnan(bare.low) and bare.as_dict()["low"] is None


def test_bootstrap_skips_resamples_where_a_metric_is_undefined() -> None:
    # One positive row in 20: many resamples miss it, and AUC is undefined there.
    truth = np.zeros(20, dtype=int)
    truth[0] = 1
    scores = np.linspace(1.0, 0.0, 20)
    interval = bootstrap(lambda rows: {"auc": auc(truth[rows], scores[rows])}, 20, 100, 0)
    assert interval["auc"].value == 1.0 and interval["auc"].low == 1.0


def test_moderation_report_one_score_and_hate_category_models() -> None:
    classes = np.array([0, 0, 1, 1, 2, 2])  # hate, offensive, neither
    one_score = [{"offensive": p} for p in (0.9, 0.6, 0.95, 0.7, 0.1, 0.3)]
    report = moderation_report(one_score, classes, threshold=0.5)
    values = report.metrics(np.arange(6))
    assert values["auc_offensive_or_hate_vs_neither"] == 1.0
    # The one score answers hate too: hate (0.9, 0.6) vs offensive (0.95, 0.7): 1 pair of 4.
    assert values["auc_hate_vs_offensive"] == 0.25
    assert values["accuracy"] == pytest.approx(4 / 6)  # hate rows predicted "offensive"
    assert "no hate category" in report.notes["hate_score"]

    head = [
        {"hate_speech": h, "offensive": o}
        for h, o in ((0.8, 0.9), (0.7, 0.8), (0.2, 0.9), (0.1, 0.6), (0.0, 0.1), (0.05, 0.2))
    ]
    report = moderation_report(head, classes, threshold=0.5)
    values = report.metrics(np.arange(6))
    assert values["auc_hate_vs_offensive"] == 1.0 and values["auc_hate_vs_rest"] == 1.0
    assert values["accuracy"] == 1.0 and values["macro_f1"] == 1.0
    assert report.notes["hate_score"] == "hate_speech"


def _sentiment(label: str, pos: float, neg: float, neu: float | None, compound: float | None):
    return SentimentScores(label, PolarityScores(pos, neg, neu), 0.5, compound)


def test_sentiment_report_reads_compound_or_probabilities() -> None:
    classes = np.array([0, 0, 1, 1, 2, 2])  # positive, negative, neutral
    vader = [
        _sentiment(label, 0.0, 0.0, 1.0, compound)
        for label, compound in (
            ("positive", 0.8),
            ("positive", 0.3),
            ("negative", -0.6),
            ("neutral", 0.0),
            ("neutral", 0.01),
            ("negative", -0.2),
        )
    ]
    report = sentiment_report(vader, classes)
    values = report.metrics(np.arange(6))
    assert values["auc_positive_vs_negative"] == 1.0
    assert values["accuracy"] == pytest.approx(4 / 6)
    assert report.notes["polarity_score"] == "compound"

    head = [
        _sentiment("positive", 0.7, 0.1, 0.2, None),
        _sentiment("positive", 0.6, 0.2, 0.2, None),
        _sentiment("negative", 0.1, 0.8, 0.1, None),
        _sentiment("negative", 0.2, 0.5, 0.3, None),
        _sentiment("neutral", 0.2, 0.2, 0.6, None),
        _sentiment("neutral", 0.3, 0.1, 0.6, None),
    ]
    report = sentiment_report(head, classes)
    values = report.metrics(np.arange(6))
    assert values["auc_positive_vs_negative"] == 1.0
    assert values["auc_neutral_vs_rest"] == 1.0
    assert values["accuracy"] == 1.0 and values["macro_f1"] == 1.0
    assert report.notes["polarity_score"] == "P(positive) - P(negative)"


def test_format_detection_by_extension_and_first_line(tmp_path: Path) -> None:
    davidson = write_davidson_csv(tmp_path / "a.csv", rows=30)
    vader = write_vader_ground_truth(tmp_path / "b_GroundTruth.txt", rows=30)
    assert detect_format(davidson) == "davidson"
    assert detect_format(vader) == "vader"
    renamed_csv = tmp_path / "a.data"
    renamed_csv.write_bytes(davidson.read_bytes())
    renamed_tsv = tmp_path / "b.data"
    renamed_tsv.write_bytes(vader.read_bytes())
    assert detect_format(renamed_csv) == "davidson"
    assert detect_format(renamed_tsv) == "vader"
    other = tmp_path / "notes.data"
    other.write_text("just some words\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match="--format") as caught:
        detect_format(other)
    assert caught.value.argument == "--format"


def test_cli_scores_profanity_on_a_davidson_file_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_davidson_csv(tmp_path / "d.csv", rows=200, seed=3)
    assert main(["--kind", "profanity", "--data", str(data), "--bootstrap", "30", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["task"] == "moderation" and result["rows"] == 200
    assert result["model"]["name"] == "alt-profanity-check"
    offensive = result["metrics"]["auc_offensive_or_hate_vs_neither"]
    assert offensive["low"] <= offensive["value"] <= offensive["high"]
    assert offensive["value"] > 0.9  # the synthetic offensive rows swear
    assert set(result["metrics"]) == {
        "auc_offensive_or_hate_vs_neither",
        "auc_hate_vs_rest",
        "auc_hate_vs_offensive",
        "accuracy",
        "macro_f1",
    }
    # Counts and metrics only: no row text, even in the progress lines.
    assert "zorblax" not in captured.out + captured.err
    assert "idiot" not in captured.out + captured.err


def test_cli_scores_vader_on_the_test_split_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_vader_ground_truth(tmp_path / "v_GroundTruth.txt", rows=200, seed=4)
    argv = ["--kind", "vader", "--task", "sentiment", "--data", str(data), "--split", "test"]
    assert main([*argv, "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    from pipelines.data import read_vader_ground_truth

    test_rows = len(stratified_split(read_vader_ground_truth(data).classes, 0.1, 0.2, 0).test)
    assert f"split test: {test_rows:,} rows" in out
    assert "auc_positive_vs_negative" in out and "macro_f1" in out
    assert "delighted" not in out and "terrible" not in out


@pytest.mark.parametrize(
    ("argv", "argument", "fragment"),
    [
        (["--kind", "profanity", "--data", "{tmp}/missing.csv"], "--data", "does not exist"),
        (["--kind", "profanity", "--data", "{tmp}/wrong.csv"], "--data", "lacks column"),
        (["--kind", "profanity", "--data", "{tmp}/notes.data"], "--format", "cannot tell"),
        (
            ["--kind", "vader", "--task", "sentiment", "--data", "{tmp}/d.csv"],
            "--task",
            "does not match",
        ),
        (["--kind", "bert", "--data", "{tmp}/d.csv"], "--kind", "accepted: shipped, profanity"),
        (["--kind", "head", "--data", "{tmp}/d.csv"], "--path", "needs a checkpoint"),
        (
            ["--kind", "head", "--data", "{tmp}/d.csv", "--path", "{tmp}/nothing"],
            "--path",
            "head_config.json",
        ),
        (["--kind", "profanity", "--data", "{tmp}/d.csv", "--bootstrap", "-1"], "--bootstrap", ""),
    ],
)
def test_bad_input_exits_2_naming_the_argument(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    argument: str,
    fragment: str,
) -> None:
    write_davidson_csv(tmp_path / "d.csv", rows=40)
    (tmp_path / "wrong.csv").write_text("id,label,text\n1,0,hello\n", encoding="utf-8")
    (tmp_path / "notes.data").write_text("just some words\n", encoding="utf-8")
    assert main([part.format(tmp=tmp_path) for part in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {argument}: ") and fragment in err


def test_an_unknown_format_flag_is_refused_by_the_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_davidson_csv(tmp_path / "d.csv", rows=30)
    with pytest.raises(SystemExit) as caught:
        main(["--kind", "profanity", "--data", str(data), "--format", "jsonl"])
    assert caught.value.code == 2
    assert "--format" in capsys.readouterr().err


def test_cli_scores_a_transformer_checkpoint_through_the_nodes_loader(
    tmp_path: Path, tiny_moderation_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A tiny random toxic-bert-shaped checkpoint: the figures mean nothing, the mapping does.
    data = write_davidson_csv(tmp_path / "d.csv", rows=40, seed=5)
    argv = ["--kind", "transformer", "--path", str(tiny_moderation_checkpoint)]
    # Window options as a node's config gives them (the tiny model has 64 positions).
    argv += ["--option", "max_length=64", "--option", "stride=16"]
    assert main([*argv, "--data", str(data), "--bootstrap", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 40
    assert result["notes"]["toxic_score"] == "toxic"
    assert result["notes"]["hate_score"] == "identity_hate"
    assert 0.0 <= result["metrics"]["auc_hate_vs_rest"]["value"] <= 1.0
