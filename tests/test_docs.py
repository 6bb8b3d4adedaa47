"""The docs cannot point at nothing: every relative link in README.md and docs/ resolves, every
results file under docs/results/ comes in a pair (.md and .json) written by a benchmark that exists,
and where a page names a benchmark it links that benchmark's results instead of typing its figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from testbed.common import ROOT
from testbed.tour import read_tour

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULTS = ROOT / "docs" / "results"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
# Pages another engineer is writing at the same time; the README links them ahead of the merge.
PENDING: set[str] = set()
BENCHMARK = re.compile(r"benchmarks\.(\w+)")
CODE = re.compile(r"`[^`]*`")
# A goal or a condition states what a figure should be, not what was measured: "≤ 1 RTT + 10 ms",
# "±5%", "at 30 ms".
GOAL = re.compile(r"[≤≥±][^|;,)]*|\bat \d+ ms")
# Times, shares and rates: what a run measures. Sizes are left out, since they mostly describe the
# workload ("2 GiB of weights"), not its result.
FIGURE = re.compile(r"(?<![\w.])\d[\d,.]*\s?(?:ms|s|%|×|x|min|tokens/s|jobs/s|requests/s)(?![\w/])")


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:|#", link)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    missing = []
    for link in relative_links(page):
        target = (page.parent / link.split("#", 1)[0]).resolve()
        if not target.exists() and str(target.relative_to(ROOT)) not in PENDING:
            missing.append(link)
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_results_files_come_in_pairs_from_a_benchmark() -> None:
    markdown = {path.stem for path in RESULTS.glob("*.md")}
    data = {path.stem for path in RESULTS.glob("*.json")}
    assert markdown == data, f"results without their other half: {sorted(markdown ^ data)}"
    for name in markdown:
        text = (RESULTS / f"{name}.md").read_text()
        written = re.search(r"Written by `python -m benchmarks\.(\w+)", text)
        assert written, f"docs/results/{name}.md does not say which benchmark wrote it"
        assert (ROOT / "benchmarks" / f"{written[1]}.py").exists(), f"{name}.md names a missing benchmark"


def blocks(page: Path) -> list[str]:
    """Paragraphs and table rows outside code fences: the unit a figure and its source share."""
    text = FENCE.sub("", page.read_text())
    return [row for paragraph in text.split("\n\n") for row in split_rows(paragraph)]


def split_rows(paragraph: str) -> list[str]:
    return paragraph.splitlines() if paragraph.lstrip().startswith("|") else [paragraph]


def figure_problems(blocks: list[str]) -> list[str]:
    problems = []
    for block in blocks:
        for name in sorted(set(BENCHMARK.findall(block)) - {"results", "common"}):
            if f"results/{name}" not in block:
                problems.append(f"names benchmarks.{name} without linking results/{name}.md: {block[:80]!r}")
            typed = FIGURE.findall(GOAL.sub("", CODE.sub("", block)))
            if typed:
                problems.append(f"types figures {typed} beside benchmarks.{name}: {block[:80]!r}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_benchmark_figures_come_from_results_files(page: Path) -> None:
    """A paragraph (or table row) that names a benchmark links its results file and types no figure:
    the figures live in docs/results/, where the benchmark wrote them with the command that did."""
    problems = figure_problems(blocks(page))
    assert not problems, f"{page.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_figure_check_tells_a_typed_figure_from_a_goal() -> None:
    typed = "| `python -m benchmarks.stream_latency` | [figures](results/stream_latency.md) | TTFT +34 ms, 99% |"
    goal = (
        "| `python -m benchmarks.stream_latency --rtts 30` | [figures](results/stream_latency.md) | at 30 ms: ≥ 90% |"
    )
    unlinked = "`python -m benchmarks.build_cache` compares a full build with a rebuild."
    assert figure_problems([typed]) == [
        f"types figures ['34 ms', '99%'] beside benchmarks.stream_latency: {typed[:80]!r}"
    ]
    assert figure_problems([goal]) == []
    assert figure_problems([unlinked]) == [
        f"names benchmarks.build_cache without linking results/build_cache.md: {unlinked[:80]!r}"
    ]


def test_the_readme_is_a_front_door() -> None:
    """At most 150 lines, the two commands first, then what Notus is: the depth lives in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the depth to docs/"
    commands = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert [line.split()[0] for line in commands] == ["scripts/demo", "scripts/test"]


def test_every_command_of_the_readme_tour_is_run_by_the_tour_test() -> None:
    """The README's tour is a short cut through docs/tour.md, which tests/test_tour.py runs; the REPL,
    which needs a terminal, is driven in a pseudo-terminal by tests/test_chat_terminal.py instead."""
    tour = {step.command for step in read_tour(ROOT / "docs" / "tour.md")}
    readme = re.findall(r"^\$ (.+)$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert readme, "the README's tour has no commands"
    assert set(readme) - tour == {"notus chat --local"}
