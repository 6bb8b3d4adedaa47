"""The HTML report is one self-contained file that a real browser (headless Chromium) renders with its plots.

The run behind it is real (the loopback stub of test_bench_stub.py); the screenshot is kept in
the test's artefacts directory for a person to look at.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from notus_cli.bench.result_files import write_report
from notus_cli.bench.run import BenchOptions, run_benchmark
from testbed.chromium import view_page
from testbed.openai_stub import StubConfig, running_stub
from tests.fake_nvidia import nvidia_smi_env

IMAGES = """Array.from(document.images).map(image => ({
    alt: image.alt, complete: image.complete, width: image.naturalWidth, height: image.naturalHeight,
    shownWidth: image.getBoundingClientRect().width,
}))"""


def test_html_report_opens_in_chromium_and_shows_the_plots(
    tiny_model: Path, tmp_path: Path, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stub runs on this machine; a stand-in nvidia-smi finding no GPU makes that hold on any machine."""
    for name, value in nvidia_smi_env(tmp_path / "bin").items():
        monkeypatch.setenv(name, value)
    with running_stub(StubConfig(ttft=0.02, itl=0.004, fail_every=5)) as base_url:
        options = BenchOptions(
            base_url=base_url, tokenizer=tiny_model, input_len=16, output_len=8, concurrency=[1, 4], num_prompts=10,
            warmup=0, goodput=["ttft:100"], gpu="a100",
        )  # fmt: skip
        run = run_benchmark(options)
    written = write_report(run, tmp_path / "report")
    html = tmp_path / "report" / "report.html"
    assert html in written
    text = html.read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert len(sources) == 3
    assert all(source.startswith("data:image/png;base64,") for source in sources)  # nothing to fetch
    assert "<dt>TTFT</dt>" in text  # the definitions are printed
    assert "<h1>notus bench: TOY RUN, stub-model at " in text
    assert "<li>No price for AMPERE_80: a CPU served it, not a GPU</li>" in text

    view = asyncio.run(view_page(html.as_uri(), IMAGES, tmp_path / "chromium-profile"))
    (artifacts / "report.png").write_bytes(view.screenshot)
    shutil.copy(html, artifacts / "report.html")

    images = view.value
    assert [image["alt"] for image in images] == [
        "Latency against throughput across the sweep", "TTFT distribution per level", "ITL distribution per level",
    ]  # fmt: skip
    for image in images:
        assert image["complete"]
        assert (image["width"], image["height"]) == (900, 400)  # decoded: 9 × 4 inches at 100 dpi
        assert image["shownWidth"] > 300
    assert view.screenshot.startswith(b"\x89PNG")
    assert len(view.screenshot) > 50_000
