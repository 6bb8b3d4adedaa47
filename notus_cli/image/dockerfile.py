"""The two Dockerfiles of a Notus image, rendered from templates/ (Python `string.Template`, `${name}`).

Part 1 (base) holds the dependency and weight layers, part 2 (app) the settings, labels and code.
Values are quoted for the Dockerfile here, in one place.
"""

from __future__ import annotations

import json
import shlex
from importlib.resources import files
from pathlib import Path
from string import Template

from notus_cli import __version__

BASE_TEMPLATE = "base.Dockerfile"
APP_TEMPLATE = "app.Dockerfile"
MODEL_DIR = "/opt/notus/model"
MANIFEST_PATH = "/opt/notus/weights-manifest.json"

LABEL_MODEL_ID = "ai.notus.model.id"
LABEL_REVISION = "ai.notus.model.revision"
LABEL_MANIFEST = "ai.notus.model.manifest-digest"
LABEL_VERSION = "ai.notus.version"


def template_dir() -> Path:
    """templates/ in a source checkout, or its copy inside the installed package (see pyproject.toml)."""
    packaged = Path(str(files("notus_cli"))) / "templates"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "templates"


def render_base(*, base_image: str, python: str, pip_wheel: str, requirements: tuple[str, ...]) -> str:
    return _render(
        BASE_TEMPLATE,
        base_image=base_image,
        python=shlex.quote(python),
        pip_wheel=pip_wheel,
        requirements=" ".join(shlex.quote(r) for r in requirements),
    )


def render_app(*, base_stage: str, served_model_name: str, vllm_python: str, labels: dict[str, str]) -> str:
    label_lines = " \\\n      ".join(f"{key}={_quote(value)}" for key, value in labels.items())
    return _render(
        APP_TEMPLATE,
        base_stage=base_stage,
        served_model_name=_quote(served_model_name),
        vllm_python=_quote(vllm_python),
        labels=label_lines,
    )


def image_labels(
    *, model_id: str, revision: str, manifest_digest: str, base_image: str, base_digest: str | None
) -> dict[str, str]:
    """OCI annotations plus what traces an endpoint to its exact weights.

    No `created` timestamp: it would change every build and defeat the layer cache of the code step.
    """
    labels = {
        "org.opencontainers.image.title": "notus",
        "org.opencontainers.image.description": f"{model_id} served by vLLM behind the Notus RunPod worker",
        "org.opencontainers.image.version": __version__,
        "org.opencontainers.image.base.name": base_image,
        LABEL_MODEL_ID: model_id,
        LABEL_REVISION: revision,
        LABEL_MANIFEST: manifest_digest,
        LABEL_VERSION: __version__,
    }
    if base_digest:
        labels["org.opencontainers.image.base.digest"] = base_digest
    return labels


def _render(name: str, **values: str) -> str:
    return Template((template_dir() / name).read_text()).substitute(values)


def _quote(value: str) -> str:
    """A double-quoted Dockerfile word (JSON escaping is a subset the Dockerfile parser accepts)."""
    return json.dumps(value, ensure_ascii=False).replace("$", "\\$")
