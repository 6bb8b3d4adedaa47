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

LABEL_MODEL_ID = "ai.notus.model.id"
LABEL_REVISION = "ai.notus.model.revision"
LABEL_MANIFEST = "ai.notus.model.manifest-digest"
LABEL_VERSION = "ai.notus.version"
LABEL_WEIGHTS = "ai.notus.model.weights"  # baked or cached


def template_dir() -> Path:
    """templates/ in a source checkout, or its copy inside the installed package (see pyproject.toml)."""
    packaged = Path(str(files("notus_cli"))) / "templates"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "templates"


def render_base(
    *, base_image: str, python: str, pip_wheel: str, requirements: tuple[str, ...], weight_layers: list[str]
) -> str:
    """`weight_layers`: the folders under weights/ in the build context, one COPY (one layer) each."""
    copies = "\n".join(f"COPY weights/{name}/ /opt/notus/" for name in weight_layers)
    return _render(
        BASE_TEMPLATE,
        base_image=base_image,
        python=shlex.quote(python),
        pip_wheel=pip_wheel,
        requirements=" ".join(shlex.quote(r) for r in requirements),
        weight_copies=copies or "# (no weight layers: cached weights)",
    )


def render_app(
    *,
    base_stage: str,
    served_model_name: str,
    vllm_python: str,
    labels: dict[str, str],
    cached: tuple[str, str] | None = None,
) -> str:
    """`cached`: (model id, commit) of a RunPod cached model; None for weights baked at MODEL_DIR."""
    label_lines = " \\\n      ".join(f"{key}={_quote(value)}" for key, value in labels.items())
    model_env = f"NOTUS_MODEL={_quote(MODEL_DIR)}"
    if cached is not None:
        model_id, commit = (_quote(part) for part in cached)
        model_env = f'NOTUS_WEIGHTS="cached" \\\n    NOTUS_MODEL={model_id} \\\n    NOTUS_MODEL_REVISION={commit}'
    return _render(
        APP_TEMPLATE,
        base_stage=base_stage,
        model_env=model_env,
        served_model_name=_quote(served_model_name),
        vllm_python=_quote(vllm_python),
        labels=label_lines,
    )


def image_labels(
    *,
    model_id: str,
    revision: str,
    manifest_digest: str | None,
    base_image: str,
    base_digest: str | None,
    weights: str = "baked",
) -> dict[str, str]:
    """OCI annotations plus what traces an endpoint to its exact weights (for cached weights: the
    commit RunPod caches, since the image holds no weight file and so no manifest).

    No `created` timestamp: it would change every build and defeat the layer cache of the code step.
    """
    labels = {
        "org.opencontainers.image.title": "notus",
        "org.opencontainers.image.description": f"{model_id} served by vLLM behind the Notus RunPod worker",
        "org.opencontainers.image.version": __version__,
        "org.opencontainers.image.base.name": base_image,
        LABEL_MODEL_ID: model_id,
        LABEL_REVISION: revision,
        LABEL_WEIGHTS: weights,
        LABEL_VERSION: __version__,
    }
    if manifest_digest is not None:
        labels[LABEL_MANIFEST] = manifest_digest
    if base_digest:
        labels["org.opencontainers.image.base.digest"] = base_digest
    return labels


def _render(name: str, **values: str) -> str:
    return Template((template_dir() / name).read_text()).substitute(values)


def _quote(value: str) -> str:
    """A double-quoted Dockerfile word (JSON escaping is a subset the Dockerfile parser accepts)."""
    return json.dumps(value, ensure_ascii=False).replace("$", "\\$")
