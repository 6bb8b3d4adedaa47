"""The load generator's request senders: each sends one prompt and fills in one RequestRecord.

(Which server they aim at is decided before, by notus_cli.targets; these only send.)

The load generator, the metrics and the reports only know the `Target` protocol, so another
kind of server plugs in by implementing it: `runpod_target.RunPodTarget` sends RunPod jobs through
/run and /stream and also fills `record.phases` with each job's queue delay and execution time.

Targets talk aiohttp rather than httpx: as a load generator it must stay far cheaper per request
than the server it measures, and httpx's connection pool and streaming cost several times more
CPU per request (see benchmarks/loadgen_ceiling.py). `HttpTarget` holds what they share.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Protocol, Self, TypedDict, Unpack

import aiohttp
from pydantic import SecretStr
from tokenizers import Tokenizer

from notus_cli.bench.chunks import ChunkTally
from notus_cli.bench.metrics import RequestRecord
from notus_cli.bench.workload import Prompt
from notus_cli.errors import AuthError, BenchError, EndpointUnreachable
from notus_cli.openai_url import openai_base
from notus_cli.runpod.protocol.replies import error_message
from worker.sse import DONE, SSEDecoder


class Target(Protocol):
    """A server under test. `send` never raises for a failed request: it records why it failed."""

    kind: str

    async def __aenter__(self) -> Target: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def prepare(self) -> dict[str, Any]:
        """Check the server answers; return what the report should say about it (never secrets)."""
        ...

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        """Send one prompt; fill `record` (`sent_at` on time.perf_counter's clock)."""
        ...


class HttpOptions(TypedDict, total=False):
    """What a subclass of HttpTarget passes through to it unchanged (see HttpTarget for the defaults)."""

    api_key: SecretStr | None
    sampling: dict[str, Any] | None
    ignore_eos: bool
    tokenizer: Tokenizer | None
    timeout: float
    max_connections: int
    session: aiohttp.ClientSession | None


class HttpTarget:
    """What every aiohttp-based target shares: one session (connection cap, key, timeout), and the
    sampling settings every request carries."""

    kind = "http"

    def __init__(
        self,
        *,
        api_key: SecretStr | None = None,
        sampling: dict[str, Any] | None = None,
        ignore_eos: bool = False,
        tokenizer: Tokenizer | None = None,
        timeout: float = 600.0,
        max_connections: int = 0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.sampling = dict(sampling or {})
        self.ignore_eos = ignore_eos
        self.tokenizer = tokenizer
        self.timeout = timeout
        self.max_connections = max_connections
        self._api_key = api_key
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, limit_per_host=self.max_connections, keepalive_timeout=60
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=30),
                headers=self._headers(),
            )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        if self._api_key is None:
            return {}
        return {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use the target as an async context manager")
        return self._session

    async def probe(self, url: str, *, unreachable_hint: str, key_hint: str) -> tuple[int, bytes]:
        """GET `url` once to check the server answers and takes the key; returns (status, body).

        Raises EndpointUnreachable when nothing answers, and for a refused key what `notus chat` raises
        for the same server (see key_refused).
        """
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            what = f"nothing answers at {url} ({type(exc).__name__})"
            raise EndpointUnreachable(what, hint=unreachable_hint) from None
        if status in (401, 403):
            raise key_refused(self.kind, status, key_hint)
        return status, body


class OpenAIChatTarget(HttpTarget):
    """Streaming chat completions from any OpenAI-compatible server (vllm serve, RunPod's OpenAI route)."""

    kind = "openai"

    def __init__(self, base_url: str, *, model: str | None = None, **options: Unpack[HttpOptions]) -> None:
        super().__init__(**options)
        self.base_url = openai_base(base_url)
        self.model = model
        self._url = f"{self.base_url}/chat/completions"

    async def prepare(self) -> dict[str, Any]:
        """Ask /models, so a wrong URL or key fails at once; pick the first model if none was named.

        Raises EndpointUnreachable when nothing answers, ServerError when the key is refused, BenchError
        when the server lists no model.
        """
        url = f"{self.base_url}/models"
        status, body = await self.probe(
            url,
            unreachable_hint="check --base-url and that the server is running (e.g. vllm serve MODEL --port 8000)",
            key_hint="set NOTUS_BENCH__API_KEY (or api_key under [bench] in notus.toml) to a key the server accepts",
        )
        listed: list[dict[str, Any]] = []
        if status < 400:
            try:
                listed = [item for item in json.loads(body)["data"] if isinstance(item, dict) and "id" in item]
            except (ValueError, KeyError, TypeError):
                listed = []
        models = [str(item["id"]) for item in listed]
        if self.model is None:
            if not models:
                raise BenchError(
                    f"{url} lists no model (HTTP {status})", hint="name the model to ask for with --model NAME"
                )
            self.model = models[0]
        # vLLM lists the weights each served name was loaded from as its `root` (what measured.py reads)
        root = next((item.get("root") for item in listed if str(item["id"]) == self.model), None)
        return {"kind": self.kind, "base_url": self.base_url, "model": self.model, "models": models, "root": root}

    def body(self, prompt: Prompt) -> dict[str, Any]:
        """The streamed chat request for `prompt`."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt.messages,
            "max_tokens": prompt.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.sampling,
        }
        if self.ignore_eos:
            body["ignore_eos"] = True
        return body

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        record.max_tokens = prompt.max_tokens
        record.prompt_tokens = prompt.input_tokens
        record.sent_at = time.perf_counter()
        with transport_failures(record, self.timeout):
            async with self.session.post(self._url, json=self.body(prompt)) as response:
                if response.status >= 400:
                    record.fail(f"http_{response.status}", error_message(await response.read()))
                    return
                await self._read_stream(response, prompt, record)

    async def _read_stream(self, response: aiohttp.ClientResponse, prompt: Prompt, record: RequestRecord) -> None:
        tally = ChunkTally(record, tokenizer=self.tokenizer)
        decoder = SSEDecoder()
        async for data in response.content.iter_any():
            now = time.perf_counter()
            for payload in decoder.feed(data):
                if payload == DONE:
                    continue
                event = json.loads(payload)
                if "error" in event:
                    record.fail("stream_error", error_message(payload.encode()))
                    return
                tally.add(event, now)
        tally.finish()


class LBNativeTarget(OpenAIChatTarget):
    """An LB endpoint's native route: POST {LB URL}/chat with the worker's own input shape, streamed as
    SSE `chat.completion.chunk` objects (docs/worker.md), read as the OpenAI stream is. The model list
    is the workers' own /v1/models."""

    def __init__(self, lb_url: str, *, model: str | None = None, **options: Unpack[HttpOptions]) -> None:
        super().__init__(f"{lb_url.rstrip('/')}/v1", model=model, **options)
        self._url = f"{lb_url.rstrip('/')}/chat"

    def body(self, prompt: Prompt) -> dict[str, Any]:
        return native_input(prompt, self.sampling, ignore_eos=self.ignore_eos)


def native_input(prompt: Prompt, sampling: dict[str, Any], *, ignore_eos: bool) -> dict[str, Any]:
    """The worker's native input for `prompt`, streamed: messages plus top-level sampling parameters.
    The worker's own defaults apply to the rest (temperature 0.7, top_p 0.9, stop ["</s>"]), and asking
    for an exact length also clears that default stop string."""
    request: dict[str, Any] = {"messages": prompt.messages, "max_tokens": prompt.max_tokens, "stream": True}
    request.update(sampling)
    if ignore_eos:
        request.update(ignore_eos=True, stop=[])
    return request


@contextlib.contextmanager
def transport_failures(record: RequestRecord, timeout: float) -> Iterator[None]:
    """Turn what can go wrong on the wire into the record's failure cause; the run goes on."""
    try:
        yield
    except TimeoutError:
        record.fail("timeout", f"no complete answer within {timeout:g} s")
    except aiohttp.ClientConnectorError as exc:
        record.fail("connect", str(exc))
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        record.fail("disconnected", f"the server closed the stream early ({type(exc).__name__})")
    except aiohttp.ClientError as exc:
        record.fail("http_client", f"{type(exc).__name__}: {exc}")
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        record.fail("bad_response", f"a streamed event is not JSON: {exc}")


def key_refused(kind: str, status: int, hint: str) -> AuthError:
    """A refused key, worded as `notus chat` words it for the same server."""
    who = "endpoint" if kind == "runpod" else "server"
    return AuthError(f"the {who} rejected the API key (HTTP {status})", hint=hint)
