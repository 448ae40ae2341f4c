"""Merge the benchmark sections in ``bench/results/*.md`` into ``BENCHMARKS.md``.

``make bench`` runs every benchmark, then this. Each benchmark writes its own section
(numbers and the command that reproduces them) next to its JSON results.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ORDER = ("send", "pings")

HEADER = """# Benchmarks

Measured by `make bench` (each benchmark can be run alone with the command in its
section), side by side in one run: our path, the naive baseline and the physical floor.
Machine: 2 cores, 24 GB, no other load unless a section says so. Numbers are
measurements of one run, not guarantees; no test asserts a timing. Raw results:
`bench/results/*.json`.

"""


def main() -> int:
    sections = []
    for name in ORDER:
        path = RESULTS / f"{name}.md"
        if path.exists():
            sections.append(path.read_text().strip())
    others = sorted(
        p for p in RESULTS.glob("*.md") if p.stem not in ORDER and not p.stem.endswith("-quick")
    )
    sections += [p.read_text().strip() for p in others]
    if not sections:
        print("no benchmark results in bench/results: run make bench", file=sys.stderr)
        return 1
    (ROOT / "BENCHMARKS.md").write_text(HEADER + "\n\n".join(sections) + "\n")
    print(f"wrote BENCHMARKS.md with {len(sections)} sections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
