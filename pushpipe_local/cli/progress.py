"""Watching a send: a progress bar fed by the run records in DynamoDB, the table of runs,
and the compact table style the CLI's tables share."""

from __future__ import annotations

import time
from typing import TypedDict

from rich import box
from rich.box import Box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pushpipe.sending.run_store import RunStore
from pushpipe.sending.runs import FINAL_STATES, RunView, run_id_for


def wait_for_run(store: RunStore, bucket: str, key: str, etag: str, timeout_s: float = 60) -> str:
    """The run id once admission has claimed the object (the S3 event may take a moment)."""
    run_id = run_id_for(bucket, key, etag)
    end = time.time() + timeout_s
    while time.time() < end:
        if store.run_header(run_id):
            return run_id
        time.sleep(0.05)
    raise TimeoutError(f"no send started for s3://{bucket}/{key} within {timeout_s:.0f} s")


class RunStalled(Exception):
    def __init__(self, view: RunView, stall_s: float) -> None:
        super().__init__(
            f"run {view.run_id} ({view.state}) made no progress for {stall_s:.0f} s: "
            f"{view.processed:,} of {view.total:,} done, {view.carried:,} waiting for "
            "their push service; `pushpipe status` shows it later"
        )
        self.view = view


def why_lines(view: RunView) -> list[str]:
    """What a user reads after a send: the run's reason, then the top reasons recipients
    were rejected, failed or are still waiting."""
    lines = []
    if view.state != "done" and view.reason:
        lines.append(f"{view.state}: {view.reason}")
    if view.rejections:
        lines.append(f"{view.counts.get('rejected', 0) or view.malformed:,} recipients rejected:")
        lines += [f"  {n:>8,}  {why}" for why, n in view.rejections.items()]
    if view.carried:
        lines.append(f"{view.carried:,} recipients waiting for their push service (carried)")
    return lines


def follow(
    store: RunStore,
    run_id: str,
    console: Console | None = None,
    timeout_s: float = 3600,
    show: bool = True,
    stall_s: float = 180,
) -> RunView:
    """Poll the run until it reaches a final state, drawing a progress bar. Stops with
    ``RunStalled`` when the run made no progress for ``stall_s`` (nothing sent, no cursor
    moved): a run that cannot finish is not waited on."""
    console = console or Console()
    end = time.time() + timeout_s
    view = store.view(run_id)
    last, moved_at = None, time.time()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
        transient=False,
    ) as progress:
        task = progress.add_task("sending", total=None, detail="admitting")
        while time.time() < end:
            view = store.view(run_id)
            if view is not None:
                c = view.counts
                progress.update(
                    task,
                    total=view.total or None,
                    completed=view.processed,
                    description=f"{view.campaign or 'sending'}",
                    detail=(
                        f"sent {c['sent']:,}  pruned {c['pruned']:,}  failed {c['failed']:,}"
                        f"  control {c['control']:,}  [{view.state}]"
                    ),
                )
                if view.state in FINAL_STATES:
                    break
                mark = (view.state, view.processed, view.carried, tuple(c.values()))
                if mark != last:
                    last, moved_at = mark, time.time()
                elif time.time() - moved_at > stall_s:
                    raise RunStalled(view, stall_s)
            time.sleep(0.2)
    if view is None:
        raise TimeoutError(f"run {run_id} not found")
    return view


class TableStyle(TypedDict):
    box: Box
    pad_edge: bool
    show_edge: bool
    collapse_padding: bool


# Tables that fit an 80-column terminal: no outer edge, one space between columns.
COMPACT: TableStyle = {
    "box": box.SIMPLE_HEAD,
    "pad_edge": False,
    "show_edge": False,
    "collapse_padding": True,
}


def run_table(views: list[RunView]) -> Table:
    """One row per run, narrow enough for an 80-column terminal; the file and the reason
    go in the caption lines."""
    table = Table(title="send runs", caption_justify="left", **COMPACT)
    for col in (
        "run",
        "state",
        "total",
        "sent",
        "pruned",
        "failed",
        "retried",
        "rejected",
        "control",
        "chains",
    ):
        table.add_column(col, justify="left" if col in ("run", "state") else "right")
    notes = []
    for v in views:
        c = v.counts
        table.add_row(
            v.run_id[:8],
            v.state,
            f"{v.total:,}",
            f"{c['sent']:,}",
            f"{c['pruned']:,}",
            f"{c['failed']:,}",
            f"{c['retried']:,}",
            f"{c['rejected']:,}",
            f"{c['control']:,}",
            str(v.chains),
        )
        notes.append(
            f"{v.run_id[:8]}: s3://{v.bucket}/{v.key}" + (f" — {v.reason}" if v.reason else "")
        )
    table.caption = "\n".join(notes)
    return table
