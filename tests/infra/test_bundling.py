"""The Lambda bundle: same import paths as the tests, Lambda-platform wheels, no CDK."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from infra.stacks import bundling
from pushpipe import topology as t

ROOT = Path(__file__).resolve().parents[2]


def _requirements(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(re.sub(r"\s+", "", line).lower())
    return out


def test_function_requirements_equal_the_project_runtime_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bundled = _requirements((ROOT / "functions" / "requirements.txt").read_text().splitlines())
    assert sorted(bundled) == sorted(_requirements(project)), (
        "functions/requirements.txt and [project].dependencies in pyproject.toml differ; "
        "the Lambda bundle would not match what the tests run"
    )


def test_no_cdk_or_laptop_package_is_a_runtime_dependency():
    bundled = " ".join(
        _requirements((ROOT / "functions" / "requirements.txt").read_text().splitlines())
    )
    for dev_only in ("aws-cdk", "constructs", "cdk-nag", "moto", "duckdb", "pytest"):
        assert dev_only not in bundled


def test_dependency_cache_key_follows_the_requirements(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("ijson>=3.3\n")
    first = bundling.deps_key(req)
    assert bundling.deps_key(req) == first
    req.write_text("ijson>=3.4\n")
    assert bundling.deps_key(req) != first


def test_missing_requirements_file_is_a_clear_error(tmp_path):
    with pytest.raises(bundling.BundlingError, match="requirements file not found"):
        bundling.deps_key(tmp_path / "nope.txt")


@pytest.fixture(scope="module")
def asset() -> bundling.LambdaAsset:
    return bundling.build_asset()


def test_asset_is_reused_while_nothing_changes(asset):
    first = bundling.build_asset()
    again = bundling.build_asset()
    assert again == first
    assert (
        again.path.is_dir() and (again.path / ".complete").read_text().strip() == again.asset_hash
    )


def test_every_topology_handler_is_in_the_asset_at_its_import_path(asset):
    for fn in t.FUNCTIONS:
        module, _, attr = fn.handler.rpartition(".")
        path = asset.path / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{fn.name}: {path} missing from the bundle"
        names = {
            node.name
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        } | {
            target.id
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert attr in names, f"{fn.handler}: no top-level {attr!r}"
    assert (asset.path / "pushpipe" / "topology" / "__init__.py").is_file()
    assert (asset.path / "infra" / "runtime" / "secret_seeder.py").is_file()


def test_asset_carries_arm64_cpython312_wheels_and_no_cdk(asset):
    native = list(asset.path.glob("pydantic_core/_pydantic_core*.so"))
    assert native and all("cpython-312-aarch64-linux-gnu" in p.name for p in native)
    assert (asset.path / "aws_lambda_powertools").is_dir()
    assert (asset.path / "http_ece").exists() or list(asset.path.glob("http_ece*"))
    for forbidden in ("aws_cdk", "cdk_nag", "constructs", "jsii", "moto", "infra/stacks"):
        assert not (asset.path / forbidden).exists(), f"{forbidden} must not be bundled"
    assert not list(asset.path.rglob("__pycache__"))


def test_asset_hash_changes_with_the_source(tmp_path):
    root = tmp_path / "repo"
    for src, _ in bundling.SOURCES:
        path = root / src
        if src.endswith(".py"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("# x\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "__init__.py").write_text("")
    (root / "functions" / "requirements.txt").write_bytes(bundling.REQUIREMENTS.read_bytes())
    # reuse the dependencies already built for the repo (no pip run here)
    build = tmp_path / "build"
    (build / "lambda-deps").mkdir(parents=True)
    (build / "lambda-deps" / bundling.deps_key()).symlink_to(bundling.build_dependencies())
    first = bundling.build_asset(root, build)
    (root / "pushpipe" / "extra.py").write_text("X = 1\n")
    second = bundling.build_asset(root, build)
    assert first.asset_hash != second.asset_hash
    assert (second.path / "pushpipe" / "extra.py").read_text() == "X = 1\n"
