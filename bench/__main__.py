"""`make bench`: run every benchmark and rewrite docs/benchmarks.md with the results."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"

#: module, title, keyword arguments of run(), what the targets are.
BENCHMARKS: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "bench.reference",
        "Reference workload (the unit of CPU figures across hosts)",
        {},
        "none: a fixed pure-Python workload's CPU seconds, to divide other hosts' figures by",
    ),
    (
        "bench.bench_diff",
        "Diff engine vs DeepDiff",
        {},
        "≥ 20,000 diffs/s on one core and ≥ 500x DeepDiff",
    ),
    (
        "bench.bench_cli_startup",
        "CLI start-up vs `python -c pass`",
        {},
        "`hub --help` under 0.5 s",
    ),
    (
        "bench.bench_broker",
        "The embedded broker: what its CPU pays for",
        {},
        "none: a profile (idle fetches, produce requests, the hub standing idle) that explains "
        "the broker's share of the end-to-end CPU (docs/performance.md)",
    ),
    ("bench.bench_mutator", "Mutator vs passthrough ceiling", {}, "≥ 50% of the passthrough"),
    (
        "bench.bench_patches",
        "Producers' patches vs full snapshots through the mutator's decision",
        {},
        "a one-value patch decided at least as fast as a full snapshot (ratio ≥ 1)",
    ),
    (
        "bench.bench_dispatcher",
        "Dispatcher vs passthrough ceiling",
        {},
        "no-op driver ≥ 50% of the passthrough",
    ),
    (
        "bench.bench_fault_drill",
        "Fault drill: a webhook target down 3 minutes, then back",
        {},
        "200 jobs, target refusing connections 60 s, then 503 for 60 s, then 429 for 60 s: "
        "nothing lost, nothing dead, everything delivered within 10 s of its return, at most "
        "one probe per few seconds during the outage",
    ),
    (
        "bench.bench_webhook",
        "Webhook receiver latency",
        {},
        "p99 < 100 ms at 50 requests/s of 10 events",
    ),
    (
        "bench.bench_sync",
        "Full REST sync into pim.snapshots",
        {},
        "≥ 2,000 products/s, peak RSS < 300 MB",
    ),
    (
        "bench.bench_console",
        "Console pages at 1 million deliveries and 100,000 entities",
        {},
        "every page < 300 ms at the 95th percentile",
    ),
    (
        "bench.bench_e2e",
        "End to end: Akeneo sandbox → hub → Magento sandbox",
        # The full catalogue (about 5 minutes here), on the RocksDB store that keeps
        # the mutator's memory flat at this size, then the live stream: 50 updates/s
        # for 2 minutes; and the load-plus-live case: 50 updates/s for 60 s DURING the load.
        {"products": 100_000, "live_seconds": 120, "store": "rocksdb", "load_live_seconds": 60},
        "full load > 300 products/s; 1% re-sync < 60 s; live p99 < 2 s, none lost; immediate p99 < 2 s during the load; RSS < 300 MB per hub service (the sandboxes apart)",
    ),
]


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, load average at start {load[0]:.1f}"
    )


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, (list, dict)):
        return "`" + json.dumps(value, default=str) + "`"
    return str(value)


def render(
    results: list[tuple[str, str, str, dict[str, Any] | str, float]],
    command: str,
    started: str = "",
    commit: str = "",
    machine: str = "",
) -> str:
    """The Markdown document."""
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (`python -m bench`); every figure below comes from one run on",
        "one machine. Speeds are given as ratios against baselines measured in the same run,",
        "because the machine is shared and noisy; absolute numbers stand beside them.",
        "Where the time goes and what was tried: `docs/performance.md`.",
        "",
        f"- command: `{command}`",
        f"- date: {started or f'{datetime.now(UTC):%Y-%m-%d %H:%M}'} UTC (start), commit {commit or _commit()}",
        f"- machine: {machine or _machine()}",
        "",
    ]
    for module, title, target, result, seconds in results:
        lines += [f"## {title}", "", f"Target: {target}. Module `{module}`, {seconds:.0f} s.", ""]
        if isinstance(result, str):
            lines += ["Not measured:", "", "```", result.strip()[-1500:], "```", ""]
            continue
        lines += ["| figure | value |", "|---|---|"]
        # `logs` names a local folder of the run: useful on the terminal, not in the document.
        lines += [f"| {k} | {_fmt(v)} |" for k, v in result.items() if k != "logs"]
        lines.append("")
    return "\n".join(lines) + "\n"


def _sections(doc: str) -> tuple[str, dict[str, str], list[str]]:
    """The document's head, its `## ` sections by title and their order."""
    head, *parts = doc.split("\n## ")
    sections: dict[str, str] = {}
    order: list[str] = []
    for part in parts:
        title = part.split("\n", 1)[0].strip()
        sections[title] = "## " + part.rstrip("\n") + "\n"
        order.append(title)
    return head.rstrip("\n") + "\n", sections, order


def merge_sections(
    existing: str,
    results: list[tuple[str, str, str, dict[str, Any] | str, float]],
    command: str,
    started: str,
    commit: str,
    machine: str,
) -> str:
    """`existing` with the sections of `results` replaced (or added), in `BENCHMARKS` order.

    A replaced section says which run produced it, since the document's head describes the
    last full `make bench` only.
    """
    head, sections, order = _sections(existing)
    _, fresh, _ = _sections(render(results, command, started, commit, machine))
    run = f"Run: `{command}`, {started} UTC, commit {commit}; {machine}."
    for title, text in fresh.items():
        first, rest = text.split("\n", 1)
        sections[title] = f"{first}\n\n{run}\n{rest}"
        if title not in order:
            order.append(title)
    rank = {title: i for i, (_, title, _, _) in enumerate(BENCHMARKS)}
    order.sort(key=lambda t: rank.get(t, len(rank)))
    return head + "\n" + "\n".join(sections[t] for t in order)


def main() -> None:
    """Run the chosen benchmarks (all by default) and rewrite docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="module names to run, e.g. bench.bench_diff")
    parser.add_argument("--no-write", action="store_true", help="print instead of writing the doc")
    args = parser.parse_args()
    results: list[tuple[str, str, str, dict[str, Any] | str, float]] = []
    # Recorded at the start: the figures belong to the code and machine state of that moment.
    run_started, commit, machine = f"{datetime.now(UTC):%Y-%m-%d %H:%M}", _commit(), _machine()
    for module, title, kwargs, target in BENCHMARKS:
        if args.only and module not in args.only:
            continue
        print(f"== {title} ({module})", flush=True)
        started = time.monotonic()
        try:
            mod = importlib.import_module(module)
            result: dict[str, Any] | str = mod.run(**kwargs)
        except Exception:
            result = traceback.format_exc()
        print(
            result if isinstance(result, str) else json.dumps(result, indent=2, default=str),
            flush=True,
        )
        results.append((module, title, target, result, time.monotonic() - started))
    command = "make bench" if not args.only else f"python -m bench --only {' '.join(args.only)}"
    doc = render(results, command, run_started, commit, machine)
    if args.no_write:
        print(doc)
        return
    DOC.parent.mkdir(exist_ok=True)
    if args.only and DOC.exists():
        # A partial run replaces only its own sections: the others keep their figures, and
        # each replaced section names the run it comes from.
        doc = merge_sections(DOC.read_text(), results, command, run_started, commit, machine)
    DOC.write_text(doc)
    print(f"wrote {DOC.relative_to(ROOT)}")
    sys.exit(0)


if __name__ == "__main__":
    main()
