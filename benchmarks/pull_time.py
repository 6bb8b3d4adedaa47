"""Pull time of baked weights in one image layer vs split into bounded layers, side by side.

    .venv/bin/python -m benchmarks.pull_time [--size-gb 2] [--layer-gb 0.5] [--stream-mbps 50] [--runs 2]
    .venv/bin/python -m benchmarks.pull_time --paper

Starts a private dockerd and Debian's docker-registry on loopback (as the tests do), writes a
model of --size-gb (the tiny model plus 512 MiB safetensors shards of random bytes, see
build_cache.py), and builds it twice with `notus build`'s library: once with every weight file in
one layer (the layout before weights were split), once split into layers of at most --layer-gb. Both are
pushed; then, alternating which goes first, every local image is removed and each is pulled from
scratch, and a container is started from it (`true` as the entrypoint), timed from the pull's
start to the container's exit. Figures are medians of --runs.

Two registry paths are measured: loopback as is, and through a proxy that holds each TCP
connection to --stream-mbps (MB/s): registries and their CDNs limit a single stream's throughput,
and that limit is what parallel layer downloads (dockerd: 3 at a time by default) get around.

`--paper` prints, without running anything, what the two layouts mean for Nemotron's 63 GB at a
few per-stream, host-link and extraction speeds (the model is in `paper_seconds`).

Left out (the CPU machines cannot run it): the GPU worker's "vLLM ready". The padding shards are
not weights vLLM could load, and a vLLM start is the same for both layouts once the files are on
disk; the start measured here is the container's. Writes docs/results/pull_time.md and .json
(`--paper`: pull_time_paper.md and .json).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker

from benchmarks.build_cache import write_model
from benchmarks.results import add_out_option, tee, text_block, write_results
from notus_cli.image.engine import DockerEngine
from notus_cli.image.pipeline import BuildRequest, build_image
from notus_cli.image.weights import local_weights, weight_layers
from notus_cli.image_reference import image_ref
from notus_cli.settings import BuildSettings
from testbed.docker import Registry, import_base_image, start_dockerd, start_registry
from testbed.vllm import free_port

Say = Callable[[str], None]
ONE_LAYER_GB = 100.0  # the setting's maximum: every shard of a few GB in one layer


class ThrottledProxy:
    """A TCP proxy on loopback that limits each connection to `rate` bytes/s in each direction."""

    def __init__(self, target: tuple[str, int], rate: float) -> None:
        self.target, self.rate, self.port = target, rate, free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started, sent = time.monotonic(), 0
        try:
            while chunk := await reader.read(256 * 1024):
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                ahead = sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def build_and_push(
    api: docker.APIClient, registry: Registry, *, model: Path, base: str, cache: Path, tag: str, layer_gb: float
) -> tuple[str, int]:
    """Build the model with weights in layers of at most `layer_gb`, push it; returns (repository:tag, layers)."""
    settings = BuildSettings(
        model_path=model, base_image=base, image="bench/pull", tag=tag, registry=registry.address,
        weight_layer_gb=layer_gb,
    )  # fmt: skip
    engine = DockerEngine(api)
    built = build_image(BuildRequest(settings, cache), engine)
    engine.push(image_ref(settings.image, tag, registry.address), _auth(registry))
    return built.reference, layer_count(model, cache, layer_gb)


def layer_count(model: Path, cache: Path, layer_gb: float) -> int:
    """How many weight layers the build made: the build's own grouping (the hashes are cached by then)."""
    files = local_weights(model, model_id="bench/pull", cache_dir=cache).files
    return len(weight_layers(files, max_bytes=int(layer_gb * 1e9)))


def forget_images(api: docker.APIClient) -> None:
    """Remove every local image, so the next pull starts from nothing (not even the base layers)."""
    for container in api.containers(all=True):
        api.remove_container(container["Id"], force=True)
    for image in api.images():
        api.remove_image(image["Id"], force=True)
    api.prune_images()


def pull_and_start(api: docker.APIClient, reference: str, auth: dict[str, str]) -> tuple[float, float]:
    """Seconds to pull `reference`, and to pull plus run a container from it to its exit."""
    started = time.perf_counter()
    DockerEngine(api).pull(reference, auth)
    pulled = time.perf_counter() - started
    container = api.create_container(reference, entrypoint=["/bin/true"], command=[])
    api.start(container["Id"])
    if api.wait(container["Id"], timeout=120)["StatusCode"] != 0:
        raise SystemExit(f"a container of {reference} failed to start")
    ran = time.perf_counter() - started
    api.remove_container(container["Id"])
    return pulled, ran


def _auth(registry: Registry) -> dict[str, str]:
    return {"username": registry.username, "password": registry.password}


def measure(
    api: docker.APIClient, address: str, images: dict[str, str], registry: Registry, runs: int, say: Say
) -> dict[str, list[tuple[float, float]]]:
    """Alternate the layouts' pulls from `address` (the registry, or the proxy in front of it)."""
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in images}
    for run in range(runs):
        order = list(images) if run % 2 == 0 else list(reversed(images))
        for name in order:
            forget_images(api)
            reference = images[name].replace(registry.address, address, 1)
            results[name].append(pull_and_start(api, reference, _auth(registry)))
            pulled, ran = results[name][-1]
            say(f"  run {run + 1} via {address}: {name:10} pulled in {pulled:6.1f} s, container done at {ran:6.1f} s")
    return results


# (per-stream MB/s, host link MB/s, extraction MB/s): a slow registry stream, a typical one, a fast one;
# extraction is gunzip + write, single-threaded per layer in dockerd, a few hundred MB/s.
PAPER_SPEEDS = ((50, 1250, 300), (100, 1250, 300), (250, 1250, 300), (100, 3000, 1000), (500, 3000, 1000))


def paper_seconds(total_gb: float, layer_gb: float, stream: float, link: float, extract: float) -> tuple[float, float]:
    """Seconds to pull `total_gb` as one layer vs layers of `layer_gb` (speeds in MB/s), on paper.

    One layer: one stream downloads it all, then it is extracted: total/stream + total/extract.
    Split: dockerd downloads 3 layers at once and extracts each as soon as it and the ones before
    it are in, so after the first layer arrives the rest flows at the slowest of 3 streams, the
    link and extraction: layer/stream + total/min(3 x stream, link, extract).
    """
    mb, layer = total_gb * 1000, min(layer_gb, total_gb) * 1000
    one = mb / stream + mb / extract
    split = layer / stream + mb / min(3 * stream, link, extract)
    return one, split


def print_paper(total_gb: float = 63.0, layer_gb: float = 5.0) -> None:
    print(f"On paper: {total_gb:g} GB of weights, one layer vs layers of <= {layer_gb:g} GB (3 parallel downloads)")
    print(f"{'per stream MB/s':>16}{'link MB/s':>11}{'extract MB/s':>14}{'one layer':>11}{'split':>9}{'ratio':>8}")
    for stream, link, extract in PAPER_SPEEDS:
        one, split = paper_seconds(total_gb, layer_gb, stream, link, extract)
        print(f"{stream:16}{link:11}{extract:14}{_minutes(one):>11}{_minutes(split):>9}{split / one:8.2f}")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0, help="GiB of weights (default 2; 63 is Nemotron)")
    parser.add_argument("--layer-gb", type=float, default=0.5, help="the split layout's bound per layer, GB")
    parser.add_argument("--stream-mbps", type=float, default=50.0, help="per-connection MB/s of the throttled path")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--paper", action="store_true", help="print the 63 GB figures on paper and exit")
    add_out_option(parser, "pull_time")
    options = parser.parse_args()
    if options.paper:
        with tee() as printed:
            print_paper()
        speeds = [dict(zip(("stream_mbps", "link_mbps", "extract_mbps"), s, strict=True)) for s in PAPER_SPEEDS]
        data = {"total_gb": 63.0, "layer_gb": 5.0, "speeds": speeds}
        title = "Pull time on paper: Nemotron's 63 GB in one layer vs 5 GB layers"
        body = text_block(printed.getvalue())
        write_results("pull_time_paper", title, body, data, out=options.out, module="pull_time")
        return
    work = Path(tempfile.mkdtemp(prefix="notus-pull-", dir="/tmp"))
    daemon = start_dockerd(work / "dockerd")
    registry = start_registry(work / "registry")
    proxy = ThrottledProxy(("127.0.0.1", int(registry.address.rsplit(":", 1)[1])), options.stream_mbps * 1e6)
    try:
        api = daemon.client()
        base = import_base_image(api, work / "base")
        model, cache = work / "model", work / "cache"
        write_model(model, int(options.size_gb * 2**30))
        size = sum(p.stat().st_size for p in model.iterdir())
        print(f"model: {size / 2**30:.2f} GiB in {len(list(model.iterdir()))} files; building and pushing ...")
        images, layers = {}, {}
        for name, layer_gb in (("one layer", ONE_LAYER_GB), ("split", options.layer_gb)):
            images[name], layers[name] = build_and_push(
                api, registry, model=model, base=base, cache=cache, tag=name.replace(" ", "-"), layer_gb=layer_gb
            )
        paths = {"loopback": registry.address, f"{options.stream_mbps:g} MB/s per stream": f"127.0.0.1:{proxy.port}"}
        table = {path: measure(api, address, images, registry, options.runs, print) for path, address in paths.items()}
        with tee() as printed:
            report(table, layers, size, options)
        data = {"model_bytes": size, "weight_layers": layers, "seconds": table}
        title = "Pull time: baked weights in one layer vs split layers"
        write_results("pull_time", title, text_block(printed.getvalue()), data, out=options.out)
        api.close()
    finally:
        proxy.stop()
        registry.stop()
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(
    table: dict[str, dict[str, list[tuple[float, float]]]],
    layers: dict[str, int],
    size: int,
    options: argparse.Namespace,
) -> None:
    """The medians of each path and layout, and each layout's ratio to one layer on the same path."""
    print(f"\n{size / 2**30:.2f} GiB of weights; split = layers of <= {options.layer_gb:g} GB; medians of "
          f"{options.runs} runs; pull = docker pull, start = pull + a container run to its exit")  # fmt: skip
    header = f"{'registry path':28}{'layout':12}{'weight layers':>14}{'pull s':>9}{'start s':>9}{'ratio':>8}"
    print(header)
    for path, results in table.items():
        one = statistics.median(r[0] for r in results["one layer"])
        for name, rows in results.items():
            pulled, ran = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
            ratio = pulled / one
            print(f"{path:28}{name:12}{layers[name]:>14}{pulled:9.1f}{ran:9.1f}{ratio:8.2f}")
    print("ratio = the layout's median pull seconds / one layer's, on the same path")


if __name__ == "__main__":
    main()
