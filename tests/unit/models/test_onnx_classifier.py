"""ONNX Runtime backend of the transformer classifiers: export parity, int8 gate, serving.

Tiny random checkpoints (a 6-label toxic-bert-shaped BERT, a 2-label SST-2-shaped DistilBERT)
are exported once per module, fp32 and int8, so the real exporter, quantiser and gate run here.
Their scores mean nothing; the tests check that only the forward pass changes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from configs.nodes import ModerationModelSpec, SentimentModelSpec
from models.moderation import TransformerModerator
from models.onnx_backend import (
    GATE_FILE,
    MODEL_FILE,
    ArtifactNotServableError,
    ClassifierGateReport,
    OnnxClassifier,
    OnnxEmbedder,
    check_servable,
    file_sha256,
    read_gate_report,
)
from models.sentiment import TransformerSentiment
from models.text_classifier import load_text_classifier
from pipelines.data import LabelledTexts
from pipelines.export_onnx import (
    DEFAULT_GATE_DATA,
    export_and_gate_classifier,
    held_out_gate_rows,
    infer_task,
    main,
)
from tests.fixtures.labelled_data import write_davidson_csv, write_vader_ground_truth

# Tiny checkpoints have 64 positions: 64-token windows sharing 8 tokens.
STRIDE = 8
LONG_TEXT = "hello world " * 60 + "you are a stupid idiot"
TEXTS = [
    "have a lovely day",
    "you are an idiot",
    "",
    "thanks!",
    LONG_TEXT,
    "the river is near the old school " * 12,
    *[f"{a} {b}" for a in ("my dog", "this city", "the game") for b in ("is great", "is awful")],
    *[f"post number {i} about the {w}" for i in range(6) for w in ("sun", "sea", "rain")],
]


def _rows(data: LabelledTexts) -> tuple[np.ndarray, list[str]]:
    return data.classes, data.texts


@pytest.fixture(scope="module")
def artifacts(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_moderation_checkpoint: Path,
    tiny_sentiment_checkpoint: Path,
) -> dict[str, tuple[Path, ClassifierGateReport]]:
    """fp32 and int8 artifacts of both tiny classifiers, gated."""
    root = tmp_path_factory.mktemp("onnx_classifier")
    toxicity = held_out_gate_rows(
        "moderation", [write_davidson_csv(root / "davidson.csv", rows=200)], max_texts=None
    )
    ratings = held_out_gate_rows(
        "sentiment", [write_vader_ground_truth(root / "tweets.txt", rows=200)], max_texts=30
    )
    built = {}
    # Labels mode on held-out synthetic rows, and reference mode (fp32's decisions) on TEXTS.
    # A random tiny int8 model drifts more than real ones: "loose" widens the bar so an int8
    # artifact is servable and its scores can be compared through the serving path.
    for key, checkpoint, quantize, classes, texts, max_drop in (
        ("moderation-fp32", tiny_moderation_checkpoint, False, None, TEXTS, 0.005),
        ("moderation-int8", tiny_moderation_checkpoint, True, *_rows(toxicity), 0.005),
        ("moderation-int8-loose", tiny_moderation_checkpoint, True, None, TEXTS, 1.0),
        ("sentiment-fp32", tiny_sentiment_checkpoint, False, *_rows(ratings), 0.005),
        ("sentiment-int8", tiny_sentiment_checkpoint, True, None, TEXTS, 0.005),
    ):
        out = root / key
        report = export_and_gate_classifier(
            checkpoint,
            out,
            texts,
            quantize,
            classes=classes,
            stride=STRIDE,
            max_auc_drop=max_drop,
            min_texts=20,
        )
        built[key] = (out, report)
    return built


def _padded_batch(directory: Path, texts: list[str]) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    # The tiny checkpoints have 64 positions; their tokenizers report no length of their own.
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    return dict(encoded)


@pytest.mark.parametrize("task", ["moderation", "sentiment"])
def test_fp32_onnx_logits_match_torch(
    artifacts: dict[str, tuple[Path, ClassifierGateReport]],
    tiny_moderation_checkpoint: Path,
    tiny_sentiment_checkpoint: Path,
    task: str,
) -> None:
    from transformers import AutoModelForSequenceClassification

    checkpoint = tiny_moderation_checkpoint if task == "moderation" else tiny_sentiment_checkpoint
    out, report = artifacts[f"{task}-fp32"]
    # Padded batch of different lengths: the mask must be in the graph, batch axis dynamic.
    batch = _padded_batch(checkpoint, TEXTS[:6])
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, local_files_only=True)
    with torch.inference_mode():
        expected = model.eval()(**batch).logits.numpy()
    runtime = OnnxClassifier.load(out)
    actual = runtime.logits({name: value.numpy() for name, value in batch.items()})
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)
    # One text alone (no padding) gives the same row as inside the padded batch.
    single = _padded_batch(checkpoint, TEXTS[1:2])
    alone = runtime.logits({name: value.numpy() for name, value in single.items()})
    np.testing.assert_allclose(alone[0], actual[1], atol=1e-4)
    # DistilBERT takes no segment ids, BERT does.
    assert ("token_type_ids" in runtime.input_names) == (task == "moderation")
    assert report.servable and report.kind == "classifier"
    assert report.gate_mode == ("reference" if task == "moderation" else "labels")
    assert report.auc_drop and all(drop in (None, 0.0) for drop in report.auc_drop.values())
    assert (
        runtime.info.name.endswith("-onnx-fp32")
        and runtime.info.version == (report.model_sha256[:12])
    )


def test_int8_gate_is_written_and_computed(
    artifacts: dict[str, tuple[Path, ClassifierGateReport]],
) -> None:
    for key in ("moderation-int8", "moderation-int8-loose", "sentiment-int8"):
        out, report = artifacts[key]
        on_disk = read_gate_report(out)
        assert on_disk == report
        data = json.loads((out / GATE_FILE).read_text(encoding="utf-8"))
        assert data["kind"] == "classifier" and data["quantized"] is True
        assert data["quantization"]["per_channel"] is True
        assert data["model_sha256"] == file_sha256(out / MODEL_FILE)
        assert data["num_texts"] == report.num_texts > 0
        assert set(report.auc_fp32) == set(report.labels) == set(report.auc_artifact)
        drops = [drop for drop in report.auc_drop.values() if drop is not None]
        within = bool(drops) and all(abs(drop) <= report.max_allowed_auc_drop for drop in drops)
        assert report.servable == within
        assert report.servable == (not report.reasons)
        assert report.max_auc_drop == pytest.approx(max(drops) if drops else 0.0)
        for label, drop in report.auc_drop.items():
            before, after = report.auc_fp32[label], report.auc_artifact[label]
            if drop is None:
                assert before is None or after is None
            else:
                assert drop == pytest.approx(before - after, abs=1e-5)  # type: ignore[operator]
    moderation = artifacts["moderation-int8"][1]
    assert moderation.gate_mode == "labels" and moderation.task == "moderation"
    assert moderation.num_texts == 40  # the 20% test split of 200 rows
    assert artifacts["sentiment-fp32"][1].num_texts == 30  # the test split, capped
    sentiment = artifacts["sentiment-int8"][1]
    assert sentiment.gate_mode == "reference" and sentiment.task == "sentiment"
    # Reference mode: fp32 separates its own decisions perfectly where they are not all alike.
    assert all(value in (None, 1.0) for value in sentiment.auc_fp32.values())
    if all(value is None for value in sentiment.auc_fp32.values()):
        assert not sentiment.servable and "no label has both classes" in sentiment.reasons[0]


def test_tampered_missing_failed_or_other_kind_is_refused(
    artifacts: dict[str, tuple[Path, ClassifierGateReport]], tmp_path: Path
) -> None:
    source, _ = artifacts["moderation-fp32"]
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    check_servable(copy, "classifier")
    with pytest.raises(ArtifactNotServableError, match="classifier artifact"):
        OnnxEmbedder.load(copy)
    with (copy / MODEL_FILE).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactNotServableError, match="not the file"):
        OnnxClassifier.load(copy)
    with pytest.raises(ArtifactNotServableError, match="not the file"):
        TransformerModerator.load(None, "cpu", stride=STRIDE, backend="onnx", onnx_path=copy)
    shutil.copy2(source / MODEL_FILE, copy / MODEL_FILE)
    gate = json.loads((copy / GATE_FILE).read_text(encoding="utf-8"))
    gate.update(servable=False, reasons=["AUC moved"])
    (copy / GATE_FILE).write_text(json.dumps(gate), encoding="utf-8")
    with pytest.raises(ArtifactNotServableError, match="failed its accuracy gate"):
        OnnxClassifier.load(copy)
    (copy / GATE_FILE).unlink()
    with pytest.raises(ArtifactNotServableError, match="missing"):
        OnnxClassifier.load(copy)


def test_moderation_onnx_keeps_labels_windows_and_scores(
    artifacts: dict[str, tuple[Path, ClassifierGateReport]], tiny_moderation_checkpoint: Path
) -> None:
    torch_model = TransformerModerator.load(tiny_moderation_checkpoint, "cpu", stride=STRIDE)
    expected = torch_model.predict_batch(TEXTS)
    assert artifacts["moderation-int8-loose"][1].servable
    # fp32 must match torch. int8 on the tiny model's random weights moves single scores by up
    # to ~0.15 from one session's weights to the next (its initialisation is not reproducible
    # under transformers 5), so int8 is held to a mean difference and a loose bound per score;
    # trained checkpoints are held to the AUC gate instead.
    for key, tolerance in (
        ("moderation-fp32", 1e-4),
        ("moderation-int8", 0.3),
        ("moderation-int8-loose", 0.3),
    ):
        out, report = artifacts[key]
        if not report.servable:
            with pytest.raises(ArtifactNotServableError):
                load_text_classifier(
                    "moderation",
                    "transformer",
                    None,
                    "cpu",
                    stride=STRIDE,
                    backend="onnx",
                    onnx_path=out,
                )
            continue
        onnx_model = load_text_classifier(
            "moderation",
            "transformer",
            None,
            "cpu",
            stride=STRIDE,
            backend="onnx",
            onnx_path=str(out),
        )
        assert onnx_model.info.labels == torch_model.info.labels
        precision = "int8" if "int8" in key else "fp32"
        assert onnx_model.info.name == f"{tiny_moderation_checkpoint.name}-onnx-{precision}"
        assert onnx_model.info.version == report.model_sha256[:12]
        assert onnx_model.info.device == "cpu"
        actual = onnx_model.predict_batch(TEXTS)
        assert [list(row) for row in actual] == [list(row) for row in expected]
        differences = []
        for got, want in zip(actual, expected, strict=True):
            assert got == pytest.approx(want, abs=tolerance)
            differences.extend(abs(got[label] - want[label]) for label in want)
        assert sum(differences) / len(differences) <= (1e-4 if precision == "fp32" else 0.06), key
    fp32_dir = artifacts["moderation-fp32"][0]
    empty = load_text_classifier(
        "moderation", "transformer", None, "cpu", stride=STRIDE, backend="onnx", onnx_path=fp32_dir
    )
    assert empty.predict_batch([]) == []


def test_sentiment_onnx_keeps_labels_and_scores(
    artifacts: dict[str, tuple[Path, ClassifierGateReport]], tiny_sentiment_checkpoint: Path
) -> None:
    assert infer_task(tiny_sentiment_checkpoint) == "sentiment"
    torch_model = TransformerSentiment.load(
        tiny_sentiment_checkpoint, "cpu", stride=STRIDE, neutral_threshold=0.55
    )
    out, _ = artifacts["sentiment-fp32"]
    onnx_model = load_text_classifier(
        "sentiment",
        "transformer",
        None,
        "cpu",
        stride=STRIDE,
        neutral_threshold=0.55,
        backend="onnx",
        onnx_path=out,
    )
    assert onnx_model.info.labels == torch_model.info.labels
    expected, actual = torch_model.predict_batch(TEXTS), onnx_model.predict_batch(TEXTS)
    assert [row.label for row in actual] == [row.label for row in expected]
    for got, want in zip(actual, expected, strict=True):
        assert asdict(got.scores) == pytest.approx(asdict(want.scores), abs=1e-4)
        assert got.confidence == pytest.approx(want.confidence, abs=1e-4)


def test_onnx_backend_refuses_cuda_without_the_provider_and_a_missing_path(
    artifacts: dict[str, tuple[Path, ClassifierGateReport]],
) -> None:
    out, _ = artifacts["moderation-fp32"]
    # This machine's onnxruntime is the CPU build: an explicit CUDA device cannot be served.
    with pytest.raises(ValueError, match="no CUDAExecutionProvider"):
        TransformerModerator.load(None, "cuda", stride=STRIDE, backend="onnx", onnx_path=out)
    with pytest.raises(ValueError, match="needs onnx_path"):
        TransformerModerator.load(None, "cpu", stride=STRIDE, backend="onnx")
    with pytest.raises(ValueError, match="backend 'tensorrt'"):
        TransformerModerator.load(None, "cpu", backend="tensorrt")


def test_model_spec_backend_fields_name_the_field() -> None:
    spec = ModerationModelSpec(kind="transformer", backend="onnx", onnx_path="/models/tox-int8")
    assert spec.path is None
    assert spec.loader_kwargs() == {
        "max_length": None,
        "stride": 64,
        "max_windows_per_forward": 64,
        "backend": "onnx",
        "onnx_path": "/models/tox-int8",
        "onnx_threads": 0,
    }
    torch_spec = ModerationModelSpec(kind="transformer", path="/models/tox")
    assert "backend" not in torch_spec.loader_kwargs()
    sentiment = SentimentModelSpec(
        kind="transformer", backend="onnx", onnx_path="/m/sst2", onnx_threads=2
    )
    assert sentiment.loader_kwargs()["onnx_threads"] == 2
    assert sentiment.loader_kwargs()["neutral_threshold"] == 0.0
    onnx_only = {"kind": "transformer", "backend": "onnx"}
    cases = [
        (ModerationModelSpec, onnx_only, "moderation_model.onnx_path"),
        (SentimentModelSpec, onnx_only, "sentiment_model.onnx_path"),
        (
            ModerationModelSpec,
            {"kind": "transformer", "path": "/m", "onnx_path": "/m-int8"},
            "moderation_model.onnx_path",
        ),
        (ModerationModelSpec, {"backend": "onnx", "onnx_path": "/m"}, "moderation_model.kind"),
        (SentimentModelSpec, {"kind": "transformer"}, "sentiment_model.path"),
    ]
    for spec_class, fields, named in cases:
        with pytest.raises(ValidationError, match=named.replace(".", r"\.")):
            spec_class.model_validate(fields)
    # A CUDA device is onnxruntime's CUDA provider (refused at load where it is missing).
    cuda = {"kind": "transformer", "backend": "onnx", "onnx_path": "/m", "device": "cuda"}
    assert ModerationModelSpec.model_validate(cuda).device == "cuda"
    with pytest.raises(ValidationError, match="backend"):
        ModerationModelSpec.model_validate({"kind": "transformer", "path": "/m", "backend": "tf"})
    with pytest.raises(ValidationError, match="onnx_threads"):
        ModerationModelSpec.model_validate(
            {"kind": "transformer", "backend": "onnx", "onnx_path": "/m", "onnx_threads": -1}
        )


def test_command_line_exports_gates_and_exits_by_verdict(
    tiny_moderation_checkpoint: Path, tmp_path: Path
) -> None:
    data = write_davidson_csv(tmp_path / "davidson.csv", rows=200)
    out = tmp_path / "cli-int8"
    argv = ["--model", "classifier", "--checkpoint", str(tiny_moderation_checkpoint)]
    argv += ["--out", str(out), "--quantize", "--gate-data", str(data), "--stride", str(STRIDE)]
    code = main([*argv, "--min-texts", "20", "--gate-max-texts", "30"])
    report = read_gate_report(out)
    assert isinstance(report, ClassifierGateReport)
    assert code == (0 if report.servable else 2)
    assert report.gate_mode == "labels" and report.num_texts == 30
    assert "davidson.csv" in report.sample and report.task == "moderation"
    code = main([*argv, "--min-texts", "20", "--gate-reference"])
    report = read_gate_report(out)
    assert isinstance(report, ClassifierGateReport) and report.gate_mode == "reference"
    assert "fp32's own decisions" in report.sample
    with pytest.raises(SystemExit):
        main(["--model", "classifier", "--out", str(out)])  # no --checkpoint


@pytest.mark.skipif(
    not all(path.is_file() for path in DEFAULT_GATE_DATA["moderation"]),
    reason="../shared/data is absent (a fresh clone); the held-out split needs Davidson's CSV",
)
def test_default_gate_sample_is_the_heads_held_out_split() -> None:
    files = list(DEFAULT_GATE_DATA["moderation"])
    split = held_out_gate_rows("moderation", files, max_texts=None)
    # 20% of each class of 19,877 rows, as configs/pipelines/moderation_head.yaml splits them.
    assert 3900 < len(split) < 4050 and set(split.classes.tolist()) == {0, 1, 2}
    capped = held_out_gate_rows("moderation", files, max_texts=1000)
    assert len(capped) == 1000 and set(capped.texts) <= set(split.texts)
    assert capped.texts == held_out_gate_rows("moderation", files, max_texts=1000).texts
