"""The deployments file: names resolve to endpoint ids; bad names list the known ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from notus_cli.deployments import Deployment, find_deployment, forget_deployment, load_deployments, save_deployment
from notus_cli.errors import ConfigError


def test_save_find_forget(tmp_path: Path) -> None:
    prod = Deployment(name="prod", endpoint_id="ep1", template_id="tp1", image="r/notus@sha256:ab", gpu="AMPERE_80")
    save_deployment(prod, tmp_path)
    save_deployment(Deployment(name="eu", endpoint_id="ep2", template_id="tp2", image="i", gpu="ADA_80_PRO"), tmp_path)
    assert find_deployment("prod", tmp_path) == prod
    assert set(load_deployments(tmp_path)) == {"prod", "eu"}
    forget_deployment("prod", tmp_path)
    with pytest.raises(ConfigError, match=r"no deployment named 'prod' \(known: eu\)"):
        find_deployment("prod", tmp_path)


def test_corrupt_state_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "deployments.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_deployments(tmp_path)
