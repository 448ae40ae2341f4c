"""The Lambda code asset, built without Docker.

Every function ships the same asset, so import paths are identical in Lambda and in
the tests (``functions.send_batch.handler.handler``, ``pushpipe.…``):

1. Dependencies: ``functions/requirements.txt`` is pip-installed for the Lambda
   platform (``manylinux2014_aarch64``, CPython 3.12, binary wheels only) into
   ``build/lambda-deps/<key>/``. ``key`` hashes the requirements and the target, so a
   repeated synth reuses the folder and only a change of requirements reinstalls.
   Packages published only as a source distribution (http-ece) are first built into
   pure-Python wheels on this machine (``pip wheel``) and offered to the platform
   install through ``--find-links``.
2. Asset: ``build/lambda-asset/<hash>/`` holds the dependencies (hard links, so it is
   cheap) plus copies of ``functions/``, ``pushpipe/`` and ``infra/runtime/`` (the
   deploy-time custom resource handlers). CDK libraries never enter the bundle.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "functions" / "requirements.txt"
BUILD_DIR = ROOT / "build"

PYTHON_VERSION = "3.12"  # must match the Lambda runtime chosen in infra/stacks/functions.py
PLATFORM = "manylinux2014_aarch64"  # arm64 (Graviton) Lambda
LAYOUT_VERSION = "1"  # bump when the asset layout below changes

# (path in the repo, path in the asset). Import paths stay the same as in tests.
SOURCES: tuple[tuple[str, str], ...] = (
    ("functions", "functions"),
    ("pushpipe", "pushpipe"),
    ("infra/__init__.py", "infra/__init__.py"),
    ("infra/runtime", "infra/runtime"),
)
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}
_KEEP_ASSETS = 4


class BundlingError(RuntimeError):
    """The Lambda bundle could not be built; the message says what failed and why."""


@dataclass(frozen=True)
class LambdaAsset:
    path: Path  # folder to hand to ``lambda.Code.from_asset``
    asset_hash: str  # content hash of dependencies + sources (custom CDK asset hash)


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def deps_key(requirements: Path = REQUIREMENTS) -> str:
    """Cache key of the dependency folder: the requirements and the target platform."""
    if not requirements.is_file():
        raise BundlingError(f"Lambda requirements file not found: {requirements}")
    return _sha256(requirements.read_bytes(), PLATFORM.encode(), PYTHON_VERSION.encode(), b"cp")[
        :20
    ]


def _run_pip(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise BundlingError(
            f"{what} failed (exit {proc.returncode}); PyPI must be reachable the first time "
            f"the Lambda dependencies are built.\ncommand: {' '.join(cmd)}\n{tail}"
        )


def build_dependencies(requirements: Path = REQUIREMENTS, build_dir: Path = BUILD_DIR) -> Path:
    """The platform dependency folder for ``requirements``, built once and cached."""
    key = deps_key(requirements)
    target = build_dir / "lambda-deps" / key
    if (target / ".complete").is_file():
        return target
    work = build_dir / "lambda-deps" / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    wheelhouse = work / "wheelhouse"
    site = work / "site"
    try:
        work.mkdir(parents=True)
        # Source-only distributions become pure-Python wheels here; binary ones for this
        # host are ignored by the platform install below (wrong tags).
        _run_pip(
            ["wheel", "--quiet", "--wheel-dir", str(wheelhouse), "-r", str(requirements)],
            "building wheels for source-only Lambda dependencies",
        )
        _run_pip(
            [
                "install",
                "--quiet",
                "--no-compile",
                "--platform",
                PLATFORM,
                "--only-binary=:all:",
                "--python-version",
                PYTHON_VERSION,
                "--implementation",
                "cp",
                "--find-links",
                str(wheelhouse),
                "--target",
                str(site),
                "-r",
                str(requirements),
            ],
            f"installing Lambda dependencies for {PLATFORM} / CPython {PYTHON_VERSION}",
        )
        shutil.rmtree(site / "bin", ignore_errors=True)
        (site / ".complete").write_text(key + "\n")
        try:
            site.rename(target)
        except OSError:
            if not (target / ".complete").is_file():  # not a concurrent build that won
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _source_files(root: Path) -> list[tuple[Path, str]]:
    """(file in the repo, relative path in the asset) for every bundled source file."""
    files: list[tuple[Path, str]] = []
    for src, dest in SOURCES:
        path = root / src
        if path.is_file():
            files.append((path, dest))
            continue
        if not path.is_dir():
            raise BundlingError(f"bundled source folder is missing: {path}")
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for name in sorted(filenames):
                if Path(name).suffix in _SKIP_SUFFIXES:
                    continue
                file = Path(dirpath) / name
                files.append((file, f"{dest}/{file.relative_to(path).as_posix()}"))
    return files


def _link_tree(src: Path, dest: Path) -> None:
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dest, copy_function=link, ignore=shutil.ignore_patterns(".complete"))


def _prune(parent: Path, keep: Path) -> None:
    old = sorted(
        (p for p in parent.iterdir() if p.is_dir() and p != keep and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in old[_KEEP_ASSETS - 1 :]:
        shutil.rmtree(stale, ignore_errors=True)


def build_asset(root: Path = ROOT, build_dir: Path = BUILD_DIR) -> LambdaAsset:
    """Build (or reuse) the asset folder holding dependencies and sources."""
    deps = build_dependencies(root / "functions" / "requirements.txt", build_dir)
    files = _source_files(root)
    digest = hashlib.sha256(f"{LAYOUT_VERSION}:{deps.name}".encode())
    for file, rel in files:
        digest.update(rel.encode() + b"\0" + file.read_bytes() + b"\0")
    asset_hash = digest.hexdigest()[:32]
    target = build_dir / "lambda-asset" / asset_hash
    if (target / ".complete").is_file():
        return LambdaAsset(target, asset_hash)
    work = build_dir / "lambda-asset" / f".tmp-{asset_hash}-{uuid.uuid4().hex[:8]}"
    try:
        work.parent.mkdir(parents=True, exist_ok=True)
        _link_tree(deps, work)
        for file, rel in files:
            dest = work / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, dest)
        (work / ".complete").write_text(asset_hash + "\n")
        try:
            work.rename(target)
        except OSError:
            if not (target / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _prune(target.parent, keep=target)
    return LambdaAsset(target, asset_hash)
