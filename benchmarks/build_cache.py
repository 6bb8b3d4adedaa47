"""Full build vs code-only rebuild with a 2 GB model, side by side, and the CLI's peak memory.

    .venv/bin/python -m benchmarks.build_cache [--size-gb 2] [--runs 3]

Starts a private dockerd (as the tests do) with a small Debian base image, writes a model of
--size-gb (the tiny model plus valid safetensors shards of random bytes), then alternates:

  full build   no notus-base image, no layer cache, no hash cache: hash 2 GB, stream it, COPY it
  rebuild      one line of the worker changed: the CLI reuses notus-base, sends only the code

Each run is the real `notus build` in a subprocess; its peak RSS comes from wait4(). The worker's
wheels are downloaded once before the runs (that is network time, not build time). Goals: the
rebuild takes at most 10% of the full build; the CLI stays under 300 MB while it streams 2 GB.
Writes docs/results/build_cache.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import worker
from benchmarks.results import add_out_option, tee, text_block, write_results
from notus_cli.model.tiny import write_tiny_model
from testbed.docker import import_base_image, start_dockerd
from testbed.vllm import ROOT

SHARD = 512 * 2**20


def write_model(directory: Path, size: int) -> None:
    """The tiny model plus shards of random bytes up to `size`, each a valid safetensors file."""
    write_tiny_model(directory)
    rng = np.random.default_rng(0)
    remaining, index = size, 0
    while remaining > 0:
        count = min(SHARD, remaining)
        header = json.dumps({"padding": {"dtype": "U8", "shape": [count], "data_offsets": [0, count]}}).encode()
        with (directory / f"padding-{index:05d}.safetensors").open("wb") as out:
            out.write(len(header).to_bytes(8, "little") + header)
            for start in range(0, count, 64 * 2**20):
                out.write(rng.integers(0, 256, size=min(64 * 2**20, count - start), dtype=np.uint8).tobytes())
        remaining -= count
        index += 1


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one `notus` run.

    The peak is the process's own VmHWM, sampled until it exits: wait4()'s ru_maxrss would also
    count this (much larger) parent, whose memory a child inherits for a moment at fork.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([sys.executable, "-m", "notus_cli", *args], env=env, cwd=cwd,
                                   stdout=subprocess.DEVNULL, stderr=errors)  # fmt: skip
        peak_kib = 0
        while process.poll() is None:
            peak_kib = max(peak_kib, _high_water_kib(process.pid))
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"notus {' '.join(args)} failed:\n{errors.read().decode()[-3000:]}")
    return elapsed, peak_kib / 1024


def _high_water_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it just exited
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def forget_builds(api: object, cache: Path) -> None:
    """Make the next build a full one: drop notus' images, the daemon's build cache and the hash cache."""
    for image in api.images(name="notus-base") + api.images(name="bench"):  # type: ignore[attr-defined]
        for tag in image.get("RepoTags") or []:
            api.remove_image(tag, force=True)  # type: ignore[attr-defined]
    api.prune_images(filters={"dangling": True})  # type: ignore[attr-defined]
    (cache / "hashes.json").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    add_out_option(parser, "build_cache")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="notus-bench-", dir="/tmp"))
    daemon = start_dockerd(work / "dockerd")
    try:
        api = daemon.client()
        base = import_base_image(api, work / "base")
        model, cache, project = work / "model", work / "cache", work / "project"
        project.mkdir()
        write_model(model, int(options.size_gb * 2**30))
        size = sum(p.stat().st_size for p in model.iterdir())
        code = work / "code"
        shutil.copytree(Path(worker.__file__).parent, code / "worker", ignore=shutil.ignore_patterns("__pycache__"))
        env = dict(os.environ) | {
            "DOCKER_HOST": daemon.host, "NOTUS_BUILD__CACHE_DIR": str(cache), "NO_COLOR": "1",
            "PYTHONPATH": f"{code}{os.pathsep}{ROOT}",  # the worker copy first: its edits are the code change
        }  # fmt: skip
        args = ["build", "--model-path", str(model), "--base-image", base, "--image", "bench", "--tag", "run"]
        print(f"model: {size / 2**30:.2f} GiB in {len(list(model.iterdir()))} files; warming the wheel cache ...")
        run_cli(args, env, project)  # downloads the wheels once; not measured
        rows = []
        for number in range(1, options.runs + 1):
            forget_builds(api, cache)
            full, full_rss = run_cli(args, env, project)
            handler = code / "worker" / "handler.py"
            handler.write_text(handler.read_text() + f"\n# benchmark edit {number}\n")
            rebuild, rebuild_rss = run_cli(args, env, project)
            rows.append((full, rebuild, full_rss, rebuild_rss))
            print(f"run {number}: full {full:6.1f} s  rebuild {rebuild:5.1f} s  ({rebuild / full:5.1%})  "
                  f"peak RSS full {full_rss:5.0f} MiB, rebuild {rebuild_rss:5.0f} MiB", flush=True)  # fmt: skip
        full_m, rebuild_m = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        peak = max(r[2] for r in rows)
        with tee() as printed:
            print(f"model: {size / 2**30:.2f} GiB in {len(list(model.iterdir()))} files; {options.runs} runs")
            print(f"\n{'':24}{'full build':>12}{'code rebuild':>14}")
            print(f"{'median seconds':24}{full_m:12.1f}{rebuild_m:14.1f}")
            print(f"{'max peak RSS (MiB)':24}{peak:12.0f}{max(r[3] for r in rows):14.0f}")
            print(f"rebuild / full = {rebuild_m / full_m:.1%} (goal <= 10%); "
                  f"CLI peak while streaming {size / 2**30:.2f} GiB = {peak:.0f} MiB (goal <= 300)")  # fmt: skip
        data = {
            "model_bytes": size,
            "runs": [
                dict(zip(("full_s", "rebuild_s", "full_rss_mib", "rebuild_rss_mib"), r, strict=True)) for r in rows
            ],
        }
        title = "Build cache: a full build vs a code-only rebuild"
        write_results("build_cache", title, text_block(printed.getvalue()), data, out=options.out)
        api.close()
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
