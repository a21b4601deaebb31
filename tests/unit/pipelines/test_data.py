"""Job config validation and the data-path checks that run before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from configs.pipelines import TextHeadJobConfig, load_job_config, load_tune_job_config
from pipelines.data import (
    DataValidationError,
    load_labelled,
    read_davidson_csv,
    read_vader_ground_truth,
    stratified_split,
)
from pipelines.evaluation import moderation_metrics, sentiment_metrics
from tests.fixtures.labelled_data import write_davidson_csv, write_vader_ground_truth

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

BASE = {
    "task": "moderation",
    "data_paths": ["x.csv"],
    "mlflow": {"registered_model_name": "heads-moderation"},
}


def test_example_job_configs_validate() -> None:
    # Text-head jobs only; the other job files are checked with their own jobs' tests.
    for path in sorted((REPO_ROOT / "configs" / "pipelines").glob("*_head.yaml")):
        # tune_*_head.yaml: the same job plus a search (tests/unit/pipelines/test_tune.py).
        loader = load_tune_job_config if path.name.startswith("tune_") else load_job_config
        config = loader(path)
        assert config.metric in {"macro_auc", "macro_f1"}


def test_job_config_rejects_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epoch"):
        TextHeadJobConfig.model_validate({**BASE, "epoch": 3})
    with pytest.raises(ValueError, match="task"):
        TextHeadJobConfig.model_validate({**BASE, "task": "vision"})
    with pytest.raises(ValueError, match="leaves under 20% for training"):
        TextHeadJobConfig.model_validate(
            {**BASE, "test_fraction": 0.45, "validation_fraction": 0.45}
        )
    config = tmp_path / "job.yaml"
    config.write_text("task: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_job_config(config)
    with pytest.raises(ValueError, match="cannot be read"):
        load_job_config(tmp_path / "missing.yaml")


def test_default_metric_per_task() -> None:
    assert TextHeadJobConfig.model_validate(BASE).metric == "macro_auc"
    sentiment = {**BASE, "task": "sentiment", "mlflow": {"registered_model_name": "s"}}
    assert TextHeadJobConfig.model_validate(sentiment).metric == "macro_f1"


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataValidationError, match="nope.csv.*does not exist"):
        read_davidson_csv(missing)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataValidationError, match="empty.txt.*is empty"):
        read_vader_ground_truth(empty)


def test_corrupt_csv_is_refused(tmp_path: Path) -> None:
    path = write_davidson_csv(tmp_path / "d.csv", rows=40)
    lines = path.read_text().splitlines()
    lines[5] = lines[5] + ',"extra,field",another,more'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match="d.csv.*not a readable UTF-8 CSV"):
        read_davidson_csv(path)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"count,class\n\xff\xfe\x00garbage\n")
    with pytest.raises(DataValidationError, match="binary.csv"):
        read_davidson_csv(binary)


def test_wrong_columns_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("id,label,text\n1,0,hello\n")
    with pytest.raises(DataValidationError, match=r"lacks column\(s\) \['count'"):
        read_davidson_csv(path)


def test_bad_class_values_name_the_lines(tmp_path: Path) -> None:
    path = write_davidson_csv(tmp_path / "d.csv", rows=40)
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[5] = "7"
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match=r"column 'class'.*line\(s\) 4"):
        read_davidson_csv(path)


def test_vader_file_checks(tmp_path: Path) -> None:
    good = write_vader_ground_truth(tmp_path / "good.txt", rows=50)
    data = read_vader_ground_truth(good)
    assert len(data) == 50 and data.labels == ("positive", "negative", "neutral")
    bad = tmp_path / "bad.txt"
    bad.write_text("1\t0.5\tfine\r\n2\tnot-a-number\tx\r\n3 no tabs here\r\n")
    with pytest.raises(DataValidationError, match=r"bad.txt': line\(s\) 3 do not have three"):
        read_vader_ground_truth(bad)
    out_of_range = tmp_path / "range.txt"
    out_of_range.write_text("".join(f"{i}\t9.0\ttext {i}\n" for i in range(30)))
    with pytest.raises(DataValidationError, match="not a number in -4..4"):
        read_vader_ground_truth(out_of_range)


def test_errors_never_quote_row_text(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    secret = "SECRET-TWEET-TEXT"
    path.write_text(
        f"count,hate_speech,offensive_language,neither,class,tweet\n3,0,0,3,9,{secret}\n"
    )
    with pytest.raises(DataValidationError) as excinfo:
        read_davidson_csv(path)
    assert secret not in str(excinfo.value)


def test_sampling_and_split_are_seeded_and_stratified(tmp_path: Path) -> None:
    path = write_davidson_csv(tmp_path / "d.csv", rows=300)
    data = load_labelled("moderation", [str(path)], max_rows=200, seed=1)
    assert len(data) == 200
    again = load_labelled("moderation", [str(path)], max_rows=200, seed=1)
    assert data.texts == again.texts
    split = stratified_split(data.classes, 0.1, 0.2, seed=1)
    parts = [set(split.train), set(split.validation), set(split.test)]
    assert sum(len(p) for p in parts) == 200
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    for part in (split.validation, split.test):
        assert set(data.classes[part]) == {0, 1, 2}  # every class measured
    assert np.array_equal(split.test, stratified_split(data.classes, 0.1, 0.2, seed=1).test)


def test_metrics_on_perfect_and_random_scores() -> None:
    classes = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.array([[0.9, 0.9], [0.8, 0.95], [0.1, 0.9], [0.2, 0.8], [0.0, 0.1], [0.1, 0.0]])
    metrics = moderation_metrics(perfect, classes)
    assert metrics["macro_auc"] == 1.0 and metrics["auc_hate_vs_offensive"] == 1.0
    sentiment = sentiment_metrics(np.eye(3)[[0, 1, 2, 0]], np.array([0, 1, 2, 0]))
    assert sentiment["accuracy"] == 1.0 and sentiment["macro_f1"] == 1.0


@pytest.mark.skipif(
    not (SHARED_DATA / "toxicity" / "davidson_train.csv").is_file(),
    reason="../shared/data is absent (a fresh clone): the real data sets are not needed in CI",
)
def test_shared_data_files_pass_the_checks() -> None:
    data = read_davidson_csv(SHARED_DATA / "toxicity" / "davidson_train.csv")
    assert len(data) > 19_000 and set(np.unique(data.classes)) == {0, 1, 2}
    for path in sorted((SHARED_DATA / "sentiment").glob("*_GroundTruth.txt")):
        assert len(read_vader_ground_truth(path)) > 3_000
