"""`make docker-check`: the image's build, without a Docker engine.

    python -m tests.docker_check [--keep]

Reads the Dockerfile and replays its file and pip steps in a temporary root: each stage's
`WORKDIR` and absolute paths (/opt/venv, /build, /app) become folders under it, `COPY` copies
exactly the named files from the repository (or, with `--from=build`, what the build stage
made), and each `RUN` runs in bash with the stage's `ARG` / `ENV` values. Steps that need the
image's operating system (`apt-get`, `useradd`) are skipped and listed. Build arguments as
`docker build` would get them, except `TORCH_CPU_INDEX_URL` empty: pip's own configured index,
as the Makefile's venv target uses. Then, in the runtime stage's working directory with the
new virtualenv's python: every module of every packaged top-level package is imported from
the installed package (not the sources), and the Serve application is built from the copied
serve_config.yaml (`deployments.app.build_app`, validated by Ray's `ServeDeploySchema`).

Slow (a fresh virtualenv: torch, ray, transformers, ...; minutes), so not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fixtures.dockerfile import (
    REPO_ROOT,
    Copy,
    Dockerfile,
    Stage,
    copies,
    load,
    packaged_top_levels,
    stage_args,
)

# Commands of the image's operating system, not of the project's install.
SKIPPED_COMMANDS = ("apt-get", "useradd", "groupadd")
BUILD_ARG_OVERRIDES = {"TORCH_CPU_INDEX_URL": "", "DEVICE": "cpu"}

VERIFY = r"""
import importlib, pkgutil, sys
from pathlib import Path
import yaml

venv = Path(sys.prefix).resolve()
packages = sys.argv[1].split(",")
failed, count = [], 0
for top in packages:
    package = importlib.import_module(top)
    origin = Path(package.__file__).resolve()
    assert origin.is_relative_to(venv), f"{top} imported from {origin}, not the venv {venv}"
    for info in pkgutil.walk_packages(package.__path__, prefix=top + "."):
        try:
            importlib.import_module(info.name)
            count += 1
        except Exception as exc:  # report every broken module, not only the first
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
if failed:
    sys.exit("modules that do not import:\n  " + "\n  ".join(failed))
print(f"imported {count} modules of {', '.join(packages)} from {venv}")

from ray.serve.schema import ServeDeploySchema
from ray.serve.deployment import Application
from deployments.app import build_app

config = yaml.safe_load(Path("serve_config.yaml").read_text(encoding="utf-8"))
schema = ServeDeploySchema.model_validate(config)
for app_config in config["applications"]:
    assert app_config["import_path"] == "deployments.app:build_app", app_config["import_path"]
    app = build_app(app_config.get("args"))
    assert isinstance(app, Application), type(app)
print(
    f"built {len(schema.applications)} Serve application(s) from serve_config.yaml; "
    f"HTTP host {schema.http_options.host}"
)
"""


class Replay:
    def __init__(self, dockerfile: Dockerfile, root: Path) -> None:
        self.dockerfile = dockerfile
        self.root = root
        self.skipped: list[str] = []
        # The base image's python: this interpreter's (3.11, as python:3.11-slim).
        self.shims = root / "_shims"
        self.shims.mkdir(parents=True)
        for name in ("python", "python3"):
            (self.shims / name).symlink_to(sys.executable)

    def path(self, container_path: str, workdir: str) -> Path:
        absolute = (
            container_path if container_path.startswith("/") else f"{workdir}/{container_path}"
        )
        return self.root / absolute.lstrip("/")

    def rewrite(self, text: str) -> str:
        """Absolute container paths in a command or value, mapped under the root."""
        for prefix in ("/opt/venv", "/build", "/app", "/home/socialplay", "/models"):
            text = text.replace(prefix, str(self.root) + prefix)
        return text

    def run_stage(self, stage: Stage) -> tuple[dict[str, str], str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        env["PATH"] = f"{self.shims}:{env['PATH']}"
        env.update(stage_args(self.dockerfile, stage))
        env.update(BUILD_ARG_OVERRIDES)
        workdir = "/"
        copy_lines = {c.line: c for c in copies(stage)}
        for instruction in stage.instructions:
            if instruction.keyword == "ENV":
                for assignment in _env_assignments(instruction.args):
                    name, _, value = assignment.partition("=")
                    env[name] = self.rewrite(_expand(value, env))
            elif instruction.keyword == "WORKDIR":
                workdir = instruction.args
                self.path(workdir, "/").mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "COPY":
                self.copy(copy_lines[instruction.line], workdir)
            elif instruction.keyword == "RUN":
                if instruction.args.split()[0] in SKIPPED_COMMANDS:
                    self.skipped.append(f"line {instruction.line}: {instruction.args[:60]}...")
                    continue
                started = time.monotonic()
                command = self.rewrite(instruction.args)
                # Ownership needs the image's user (created by a skipped step): not replayed.
                command = command.replace("chown 1000:1000", "true")
                print(f"[docker-check] RUN (line {instruction.line}) {instruction.args[:90]}")
                subprocess.run(
                    ["bash", "-c", f"set -e; {command}"],
                    cwd=self.path(workdir, "/"),
                    env=env,
                    check=True,
                )
                print(f"[docker-check]   done in {time.monotonic() - started:.0f} s")
        return env, workdir

    def copy(self, copy: Copy, workdir: str) -> None:
        dest = self.path(copy.dest, workdir)
        for source in copy.sources:
            if copy.from_stage is not None:
                # The build stage's files are already at the same path under the root.
                assert self.path(source, "/").exists(), f"COPY --from: {source} was not built"
                continue
            origin = REPO_ROOT / source
            target = dest / origin.name if copy.dest.endswith("/") and origin.is_file() else dest
            if origin.is_dir():
                shutil.copytree(
                    origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


def _expand(value: str, env: dict[str, str]) -> str:
    for name, current in env.items():
        value = value.replace(f"${{{name}}}", current).replace(f"${name}", current)
    return value


def _env_assignments(args: str) -> list[str]:
    return shlex.split(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the temporary root")
    args = parser.parse_args(argv)
    dockerfile = load()
    root = Path(tempfile.mkdtemp(prefix="sp-docker-check-"))
    started = time.monotonic()
    try:
        replay = Replay(dockerfile, root)
        replay.run_stage(dockerfile.stage("build"))
        env, workdir = replay.run_stage(dockerfile.stage("runtime"))
        for line in replay.skipped:
            print(f"[docker-check] skipped (image OS step): {line}")
        python = root / "opt/venv/bin/python"
        subprocess.run(
            [str(python), "-P", "-c", VERIFY, ",".join(packaged_top_levels())],
            cwd=replay.path(workdir, "/"),
            env=env,
            check=True,
        )
        print(f"[docker-check] ok in {time.monotonic() - started:.0f} s (root {root})")
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"[docker-check] FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
