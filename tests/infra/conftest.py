"""Synthesize the stack once per session, the way ``cdk synth`` does, and share it.

The synth runs the ``app`` command of cdk.json (``python -m infra.cdk_app``) in a child
process with the context and output folder the CDK CLI would pass (``CDK_CONTEXT_JSON``,
``CDK_OUTDIR``): no CLI, no AWS account, no Docker. The Lambda dependencies are built
once into ``build/`` (PyPI needed the first time) and reused by later runs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = "Pushpipe"
PARAMETERS = {
    "pushpipe:vapidSubject": "mailto:ops@example.com",
    "pushpipe:approverEmails": "alice@example.com,bob@example.com",
    "pushpipe:sesIdentity": "example.com",
    "pushpipe:tenants": "acme,globex",
    "pushpipe:alarmEmail": "oncall@example.com",
    "pushpipe:pushHosts": "push.example.com",
}

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def cdk_json() -> dict:
    return json.loads((ROOT / "cdk.json").read_text())


def context(**extra) -> dict:
    """cdk.json's context plus the deploy parameters the tests use."""
    return {**cdk_json()["context"], **PARAMETERS, **extra}


@dataclass
class Synth:
    outdir: Path
    template: dict
    metadata: dict
    seconds: float

    def resources(self, type_: str) -> dict[str, dict]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}


def _command() -> list[str]:
    command = shlex.split(cdk_json()["app"])
    if command[0] in ("python", "python3"):
        command[0] = sys.executable  # the venv's interpreter, as `make` puts it on PATH
    return command


def _env(outdir: Path, ctx: dict) -> dict:
    return {
        **os.environ,
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": json.dumps(ctx),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }


def launch_app(outdir: Path, ctx: dict) -> subprocess.Popen:
    """Start cdk.json's ``app`` command the way the CDK CLI does (context and outdir by env)."""
    return subprocess.Popen(
        _command(),
        cwd=ROOT,
        env=_env(outdir, ctx),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass
class Finished:
    outdir: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _wait(proc: subprocess.Popen, outdir: Path, started: float) -> Finished:
    stdout, stderr = proc.communicate(timeout=600)
    return Finished(outdir, proc.returncode, stdout, stderr, time.perf_counter() - started)


@pytest.fixture(scope="session")
def cdk_context():
    """``cdk_context(**extra)``: cdk.json's context plus the test deploy parameters."""
    return context


@pytest.fixture(scope="session")
def assemblies(request, tmp_path_factory) -> dict[str, Finished]:
    """Both synths at once (two cores): the real one, and one without nag acknowledgements
    (only when a collected test needs it).

    The Lambda bundle is built first so the two do not race to build it.
    """
    from infra.stacks.bundling import build_asset
    from infra.stacks.nag import RAW_FINDINGS_CONTEXT

    build_asset()
    runs = {"main": context()}
    if any("raw_nag_report" in item.fixturenames for item in request.session.items):
        runs["raw"] = context(**{RAW_FINDINGS_CONTEXT: True})
    started = time.perf_counter()
    procs = {}
    for name, ctx in runs.items():
        outdir = tmp_path_factory.mktemp(f"cdk.out.{name}")
        procs[name] = (launch_app(outdir, ctx), outdir)
    return {name: _wait(proc, outdir, started) for name, (proc, outdir) in procs.items()}


@pytest.fixture(scope="session")
def synth(assemblies) -> Synth:
    run = assemblies["main"]
    assert run.returncode == 0, f"synth failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    print(f"\nsynth took {run.seconds:.1f}s")
    return Synth(
        outdir=run.outdir,
        template=json.loads((run.outdir / f"{STACK}.template.json").read_text()),
        metadata=json.loads((run.outdir / f"{STACK}.metadata.json").read_text()),
        seconds=run.seconds,
    )


@pytest.fixture(scope="session")
def raw_nag_report(assemblies) -> dict:
    """The AwsSolutions report of the synth without acknowledgements (it must fail)."""
    run = assemblies["raw"]
    assert run.returncode != 0, "without acknowledgements the AwsSolutions checks must fail"
    return json.loads((run.outdir / "validation-report.json").read_text())
