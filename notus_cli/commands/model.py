"""`notus model ...`: model files for local work."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from notus_cli.model.tiny import RANDOM_TEXT_NOTICE, write_tiny_model
from notus_cli.options import JsonOpt
from notus_cli.output import Output

app = typer.Typer(no_args_is_help=True, help="Make and inspect model files.")


@app.command("tiny")
def tiny(
    directory: Annotated[Path, typer.Argument(help="Where to write the model (created if missing).")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes identical files.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Write into a directory that is not empty.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Write a tiny random-weight Nemotron-H (Mamba-2 + attention + MLP) that vLLM's CPU build can serve."""
    out = Output(json_mode=json_mode)
    model = write_tiny_model(directory, seed=seed, force=force)
    if json_mode:
        out.json(
            {
                "path": str(model.path),
                "parameters": model.parameters,
                "vocab_size": model.vocab_size,
                "pattern": model.pattern,
            }
        )
        return
    out.text(str(model.path))
    out.info(
        f"{model.parameters:,} parameters, layers {model.pattern}, vocabulary {model.vocab_size}: {RANDOM_TEXT_NOTICE}."
    )
