"""`--out DIR`: the run as JSON (every request), CSV, PNG plots and one self-contained HTML page.

The HTML embeds its plots as data URIs and its styles inline, so it can be mailed or archived
as a single file and opened offline.
"""

from __future__ import annotations

import base64
import csv
import json
from html import escape
from pathlib import Path
from typing import Any

from notus_cli.bench import report
from notus_cli.bench.run import BenchRun
from notus_cli.errors import ConfigError

JSON_NAME = "bench.json"
HTML_NAME = "report.html"
REQUEST_COLUMNS = (
    "level", "index", "sent_at_s", "ok", "ttft_ms", "tpot_ms", "e2el_ms", "itl_mean_ms", "chunks",
    "output_tokens", "token_source", "prompt_tokens", "max_tokens", "error_cause", "error", "queue_ms",
    "execution_ms", "job_id",
)  # fmt: skip
PLOT_TITLES = {
    "latency_throughput.png": "Latency against throughput across the sweep",
    "ttft.png": "TTFT distribution per level",
    "itl.png": "ITL distribution per level",
}


def write_report(run: BenchRun, directory: Path) -> list[Path]:
    """Write every report file into `directory` (created); return their paths.

    Raises ConfigError when the directory cannot be written.
    """
    from notus_cli.bench import plots  # matplotlib takes a while to import; only reports need it

    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = [_write_json(run, directory / JSON_NAME)]
        written.append(_write_requests_csv(run, directory / "requests.csv"))
        written.append(_write_levels_csv(run, directory / "levels.csv"))
        images = plots.all_plots(run)
        for name, png in images.items():
            (directory / name).write_bytes(png)
            written.append(directory / name)
        (directory / HTML_NAME).write_text(render_html(run, images), encoding="utf-8")
        written.append(directory / HTML_NAME)
    except OSError as exc:
        raise ConfigError(f"--out: cannot write the report into {directory}: {exc.strerror or exc}") from None
    return written


def load_run(path: Path) -> BenchRun:
    """A run from its bench.json (or the directory holding it). Raises ConfigError if unreadable."""
    file = path / JSON_NAME if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file} does not exist", hint="give a bench.json written by notus bench --out DIR") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file} is not a JSON file: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file} is not a notus bench result")
    try:
        return BenchRun.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{file} is not a complete notus bench result ({type(exc).__name__}: {exc})") from None


def _write_json(run: BenchRun, path: Path) -> Path:
    path.write_text(json.dumps(run.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _write_requests_csv(run: BenchRun, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(REQUEST_COLUMNS)
        for result in run.levels:
            for r in result.records:
                writer.writerow(
                    [
                        result.level.label, r.index, f"{r.sent_at:.6f}", r.ok, _ms(r.ttft), _ms(r.tpot), _ms(r.e2el),
                        _ms(sum(r.itl) / len(r.itl)) if r.itl else "", len(r.itl) + (1 if r.ok else 0),
                        r.output_tokens, r.token_source, r.prompt_tokens, r.max_tokens, r.error_cause or "",
                        r.error or "", _ms(r.phases.get("queue")), _ms(r.phases.get("execution")), r.job_id or "",
                    ]
                )  # fmt: skip
    return path


def _write_levels_csv(run: BenchRun, path: Path) -> Path:
    header, rows = report.summary_rows(run)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.3f}"


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f4f4f6; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
dt { font-weight: 600; } dd { margin: 0 0 .5rem 1rem; }
pre { background: #f6f6f8; padding: .75rem; overflow-x: auto; font-size: 13px; }
.verdicts li { margin: .2rem 0; }
"""


def render_html(run: BenchRun, images: dict[str, bytes]) -> str:
    """The whole report as one HTML document."""
    header, rows = report.summary_rows(run)
    heading = escape(report.title(run))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{heading}</title><style>{STYLE}</style></head><body>",
        f"<h1>{heading}</h1>",
        f"<p>{escape(run.settings['target']['base_url'])} · started {escape(run.started_at)} · "
        f"workload {escape(_workload_line(run.settings['workload']))}</p>",
        "<h2>Results</h2>",
        _html_table(header, rows),
        '<ul class="verdicts">' + "".join(f"<li>{escape(line)}</li>" for line in report.verdicts(run)) + "</ul>",
        "<h2>Plots</h2>",
    ]
    for name, png in images.items():
        data = base64.b64encode(png).decode("ascii")
        title = escape(PLOT_TITLES.get(name, name))
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{title}"><figcaption>{title}</figcaption></figure>'
        )
    parts.append("<h2>Definitions</h2><dl>")
    parts += [f"<dt>{escape(term)}</dt><dd>{escape(text)}</dd>" for term, text in report.definitions()]
    parts.append("</dl>")
    settings = {"settings": run.settings, "server": run.server, "environment": run.environment}
    parts.append(f"<h2>Settings and environment</h2><pre>{escape(json.dumps(settings, indent=2))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _workload_line(workload: dict[str, Any]) -> str:
    if workload.get("kind") == "random":
        return (
            f"random, {workload.get('input_len')} input / {workload.get('output_len')} output tokens"
            f"{', ignore EOS' if workload.get('ignore_eos') else ''}"
        )
    return f"{workload.get('kind')} {workload.get('path', '')}".strip()
