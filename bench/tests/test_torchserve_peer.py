"""The TorchServe peer's two model kinds and W2's --torchserve row, without starting TorchServe."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from bench import report, run_all, torchserve_runner
from bench.run_all import _workloads, measure_torchserve, parse_args, torchserve_settings
from bench.tests.test_bench_batch import _run
from bench.torchserve_runner import (
    CLASSIFIER_HANDLER_SOURCE,
    HANDLER_SOURCE,
    TorchServeServer,
    archive_files,
    archive_model,
    checkpoint_labels,
    write_config,
)

LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
HALVES = dict.fromkeys(LABELS, 0.5)
# What bench/checkpoint.py's directory holds (tokenizer and model save_pretrained).
CLASSIFIER_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)


def _classifier_dir(tmp_path: Path) -> Path:
    """A fake classifier checkpoint: the real file names, a config with labels, plus clutter."""
    checkpoint = tmp_path / "bert-base-random"
    checkpoint.mkdir()
    for name in CLASSIFIER_FILES:
        (checkpoint / name).write_text("{}", encoding="utf-8")
    # Keys as config.json stores them: strings, here not in output order.
    id2label = {str(i): label for i, label in reversed(list(enumerate(LABELS)))}
    (checkpoint / "config.json").write_text(json.dumps({"id2label": id2label}), encoding="utf-8")
    (checkpoint / "README.md").write_text("not archived", encoding="utf-8")
    (checkpoint / "training_args.bin").write_bytes(b"not archived")
    return checkpoint


def _classes(source: str) -> dict[str, set[str]]:
    tree = ast.parse(source)
    return {
        node.name: {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }


@pytest.mark.parametrize(
    ("source", "class_name"),
    [(HANDLER_SOURCE, "MiniLMHandler"), (CLASSIFIER_HANDLER_SOURCE, "ClassifierHandler")],
)
def test_handler_sources_define_one_torchserve_handler_class(source: str, class_name: str) -> None:
    classes = _classes(source)
    # TorchServe refuses a handler module with more than one class of its own.
    assert list(classes) == [class_name]
    assert {"initialize", "preprocess", "inference", "postprocess"} <= classes[class_name]
    functions = {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
    # A module-level `handle` would be TorchServe's entry point instead of the class.
    assert "handle" not in functions
    assert "request_texts" in functions


def test_classifier_handler_scores_each_label_with_a_sigmoid() -> None:
    source = CLASSIFIER_HANDLER_SOURCE
    assert "AutoModelForSequenceClassification" in source
    assert "torch.sigmoid(" in source
    assert "max_length=self.max_length" in source
    assert "config.max_position_embeddings" in source
    assert '{"scores": dict(zip(self.labels, row))}' in source
    assert "BENCH_TORCH_THREADS" in source


def _load_handler(source: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a handler source in this process, as TorchServe's worker would, and initialise it.

    TorchServe is not installed here: a stand-in `ts.torch_handler.base_handler.BaseHandler`
    is enough, since the handlers only subclass it.
    """
    import torch

    base_handler = types.ModuleType("ts.torch_handler.base_handler")
    base_handler.BaseHandler = type("BaseHandler", (), {})  # type: ignore[attr-defined]
    for name in ("ts", "ts.torch_handler"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "ts.torch_handler.base_handler", base_handler)
    # The handler sets torch's threads for the whole process: keep this process's count.
    monkeypatch.setenv("BENCH_TORCH_THREADS", str(torch.get_num_threads()))
    namespace: dict[str, Any] = {"__name__": "handler"}
    exec(compile(source, "handler.py", "exec"), namespace)
    (handler_class,) = (
        value
        for value in namespace.values()
        if isinstance(value, type) and value.__module__ == namespace["__name__"]
    )
    handler = handler_class()
    handler.initialize(types.SimpleNamespace(system_properties={"model_dir": str(model_dir)}))
    return handler


# TorchServe hands the body over parsed, as bytes or as text, depending on the content type.
TEXTS = ["have a lovely day", "you are an idiot", "thanks!"]
REQUESTS = [
    {"body": {"text": TEXTS[0]}},
    {"body": json.dumps({"text": TEXTS[1]}).encode("utf-8")},
    {"data": json.dumps({"text": TEXTS[2]})},
]


def test_classifier_handler_scores_as_our_moderator(
    tiny_moderation_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.moderation import TransformerModerator

    handler = _load_handler(CLASSIFIER_HANDLER_SOURCE, tiny_moderation_checkpoint, monkeypatch)
    # The tiny checkpoint's 64 positions need a smaller overlap than the default; these
    # short posts are one window each anyway.
    ours = TransformerModerator.load(tiny_moderation_checkpoint, device="cpu", stride=8)
    # The tiny tokenizer saves no length (the huge sentinel): the window is the 64 positions.
    assert handler.max_length == ours.max_length == 64
    answers = handler.postprocess(handler.inference(handler.preprocess(REQUESTS)))
    expected = ours.predict_batch(TEXTS)
    assert [list(answer["scores"]) for answer in answers] == [list(LABELS)] * len(TEXTS)
    for answer, scores in zip(answers, expected, strict=True):
        assert answer["scores"] == pytest.approx(scores, abs=1e-5)


def test_minilm_handler_answers_one_unit_vector_per_request(
    tiny_moderation_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any BERT checkpoint loads as an encoder; the real MiniLM is too big for a unit test.
    handler = _load_handler(HANDLER_SOURCE, tiny_moderation_checkpoint, monkeypatch)
    answers = handler.postprocess(handler.inference(handler.preprocess(REQUESTS)))
    assert len(answers) == len(TEXTS)
    for answer in answers:
        assert sum(value * value for value in answer["embedding"]) == pytest.approx(1.0)


def test_model_kinds_keep_w3_route_and_give_the_classifier_its_own() -> None:
    assert torchserve_runner.ROUTE == "/predictions/minilm"
    assert torchserve_runner.CLASSIFIER_ROUTE == "/predictions/moderation"
    with pytest.raises(ValueError, match="unknown TorchServe model kind"):
        torchserve_runner.model_kind("bert")


def _properties(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_write_config_names_the_classifier_with_w2_batching(tmp_path: Path) -> None:
    settings = torchserve_settings(_workloads(Path("unused"))["w2"])
    path = write_config(
        tmp_path, tmp_path / "store", 8125, settings["batch_size"],
        settings["max_batch_delay_ms"], settings["workers"], kind="classifier",
    )  # fmt: skip
    properties = _properties(path)
    assert properties["load_models"] == "moderation"
    assert properties["inference_address"] == "http://127.0.0.1:8125"
    model = json.loads(properties["models"])["moderation"]["1.0"]
    assert model["marName"] == "moderation"
    assert (model["batchSize"], model["maxBatchDelay"]) == (16, 10)
    assert (model["minWorkers"], model["maxWorkers"]) == (1, 1)


def test_write_config_default_is_still_minilm(tmp_path: Path) -> None:
    properties = _properties(write_config(tmp_path, tmp_path / "store", 8125, 32, 5, 1))
    assert properties["load_models"] == "minilm"
    assert json.loads(properties["models"])["minilm"]["1.0"]["batchSize"] == 32


def test_archive_files_of_a_classifier_checkpoint(tmp_path: Path) -> None:
    checkpoint = _classifier_dir(tmp_path)
    assert [path.name for path in archive_files(checkpoint)] == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        archive_files(checkpoint)


def test_checkpoint_labels_follow_output_order(tmp_path: Path) -> None:
    assert checkpoint_labels(_classifier_dir(tmp_path)) == LABELS
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="id2label"):
        checkpoint_labels(bare)


def test_archive_model_writes_the_classifier_handler_under_its_model_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []

    def fake_run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(torchserve_runner.subprocess, "run", fake_run)
    checkpoint = _classifier_dir(tmp_path)
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    store = archive_model(checkpoint, work_dir, kind="classifier")
    (command,) = commands
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert options["--model-name"] == "moderation"
    assert store == work_dir / "model_store"
    handler = Path(options["--handler"])
    assert handler.read_text(encoding="utf-8") == CLASSIFIER_HANDLER_SOURCE
    extra = [Path(name).name for name in options["--extra-files"].split(",")]
    assert extra == list(CLASSIFIER_FILES)


def _server(tmp_path: Path, **kind: Any) -> TorchServeServer:
    return TorchServeServer(
        "torchserve", ["true"], 8125, {}, tmp_path / "ts.log", 1.0, tmp_path, **kind
    )


def test_classifier_probe_accepts_one_probability_per_label(tmp_path: Path) -> None:
    server = _server(tmp_path, kind="classifier", labels=LABELS)
    assert server.probe_route == "/predictions/moderation"
    assert server.probe_ok({"scores": HALVES})
    assert server.probe_ok({"scores": {**HALVES, "toxic": 0.0, "threat": 1.0}})


@pytest.mark.parametrize(
    "answer",
    [
        {"scores": dict.fromkeys(LABELS[:-1], 0.5)},
        {"scores": {**HALVES, "spam": 0.5}},
        {"scores": {**HALVES, "toxic": 1}},
        {"scores": {**HALVES, "toxic": True}},
        {"scores": {**HALVES, "toxic": "0.5"}},
        {"scores": {**HALVES, "toxic": 1.5}},
        {"scores": {**HALVES, "toxic": float("nan")}},
        {"scores": [0.5] * len(LABELS)},
        {"embedding": [0.0] * 384},
        [{"scores": HALVES}],
    ],
)
def test_classifier_probe_refuses_other_answers(tmp_path: Path, answer: Any) -> None:
    assert not _server(tmp_path, kind="classifier", labels=LABELS).probe_ok(answer)


def test_minilm_probe_is_unchanged(tmp_path: Path) -> None:
    server = _server(tmp_path)
    assert server.probe_route == "/predictions/minilm"
    assert server.probe_ok({"embedding": [0.0] * 384})
    assert not server.probe_ok({"embedding": [0.0] * 383})
    assert not server.probe_ok({"scores": HALVES})


def test_run_all_torchserve_option_is_for_w2() -> None:
    args = parse_args(["--workloads", "w2", "--torchserve", "--ray-ingress", "haproxy"])
    assert args.torchserve
    assert args.torchserve_port == 8125
    assert not parse_args(["--workloads", "w2"]).torchserve
    with pytest.raises(SystemExit):
        parse_args(["--workloads", "w1", "--torchserve"])


def test_torchserve_batches_like_w2s_node() -> None:
    w2 = _workloads(Path("unused"))["w2"]
    node = w2.overrides["TextModeration"]
    batching = node["user_config"]["batching"]
    assert torchserve_settings(w2) == {
        "batch_size": batching["max_batch_size"],
        "max_batch_delay_ms": round(batching["batch_wait_timeout_s"] * 1000),
        "workers": 1,
        "torch_threads": int(
            node["ray_actor_options"]["runtime_env"]["env_vars"]["OMP_NUM_THREADS"]
        ),
    }
    assert (w2.torchserve_kind, _workloads(Path("unused"))["w1"].torchserve_kind) == (
        "classifier",
        None,
    )


def test_a_torchserve_that_cannot_be_built_is_a_failed_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_venv(*_: Any, **__: Any) -> None:
        raise RuntimeError("TorchServe venv step pip install failed: no network\nmore")

    def never(*_: Any, **__: Any) -> None:
        raise AssertionError("nothing to measure")

    monkeypatch.setattr(run_all, "torchserve_server", no_venv)
    monkeypatch.setattr(run_all, "measure_server", never)
    args = parse_args(["--workloads", "w2", "--torchserve"])
    w2 = _workloads(tmp_path)["w2"]
    row = measure_torchserve(w2, args, tmp_path / "bodies.jsonl", tmp_path, "key", tmp_path)
    assert row["error"] == "TorchServe venv step pip install failed: no network"
    assert row["label"].startswith("TorchServe ") and "batch 16, 10 ms" in row["label"]


def _w2(torchserve: dict[str, Any]) -> dict[str, Any]:
    return {
        "offline": {"best": {"batch_size": 16, "texts_per_s": 36.0, "batch_ms": 444.0}},
        "servers": {
            "fastapi-baseline": {"label": "FastAPI", "runs": [_run(8, 18.0)]},
            "ray-serve-haproxy": {"label": "Ray", "runs": [_run(8, 27.0)]},
            "torchserve": {"label": "TorchServe", **torchserve},
        },
    }


def test_w2_table_has_a_ratio_to_torchserve_column() -> None:
    lines = report.workload_table(_w2({"runs": [_run(8, 30.0)]})).splitlines()
    assert lines[0].endswith("| ratio to FastAPI baseline | ratio to TorchServe |")
    assert len({line.count("|") for line in lines}) == 1
    assert "| Ray | 8 | 27.0 | 20.0 | 40.0 | 0 | 0 | 0.75 | 1.50 | 0.90 |" in lines
    assert "| TorchServe | 8 | 30.0 | 20.0 | 40.0 | 0 | 0 | 0.83 | 1.67 | 1.00 |" in lines


def test_a_failed_torchserve_row_adds_no_ratio_column() -> None:
    lines = report.workload_table(_w2({"error": "java not found"})).splitlines()
    assert lines[0].endswith("| ratio to offline ceiling | ratio to FastAPI baseline |")
    assert len({line.count("|") for line in lines}) == 1
    assert "| TorchServe | — | failed: java not found | | | | | | |" in lines
