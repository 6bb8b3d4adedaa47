"""Load-balancing endpoints: RunPod's facts (notus_cli.runpod.protocol.lb) and the emulator's gateway.

The facts are checked on their own, with no server.
"""

from __future__ import annotations

import pytest

from notus_cli.errors import ConfigError
from notus_cli.runpod.protocol import lb
from notus_cli.settings import load_settings


def test_one_template_expresses_runpods_url_and_the_emulators() -> None:
    assert lb.lb_url(lb.URL_TEMPLATE, "abc123") == "https://abc123.api.runpod.ai"
    assert lb.lb_url("http://127.0.0.1:8000/lb/{endpoint_id}/", "abc123") == "http://127.0.0.1:8000/lb/abc123"
    with pytest.raises(ValueError, match="endpoint_id"):
        lb.lb_url("https://api.runpod.ai/v2", "abc123")


def test_the_setting_defaults_to_runpods_template_and_refuses_one_without_the_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().runpod_lb_url == lb.URL_TEMPLATE
    monkeypatch.setenv("NOTUS_RUNPOD_LB_URL", "http://127.0.0.1:9/lb/{endpoint_id}")
    assert load_settings().runpod_lb_url == "http://127.0.0.1:9/lb/{endpoint_id}"
    monkeypatch.setenv("NOTUS_RUNPOD_LB_URL", "http://127.0.0.1:9/lb")
    with pytest.raises(ConfigError, match=r"NOTUS_RUNPOD_LB_URL.*endpoint_id"):
        load_settings()


@pytest.mark.parametrize(
    ("status", "state"),
    [(200, "healthy"), (204, "initializing"), (503, "unhealthy"), (404, "unhealthy"), (None, "unhealthy")],
)
def test_only_200_is_healthy_and_204_is_initializing(status: int | None, state: str) -> None:
    assert lb.health_state(status) == state


def test_the_caps_and_runpods_answers() -> None:
    assert (lb.WORKER_WAIT_S, lb.PROCESSING_S, lb.PAYLOAD_BYTES) == (120.0, 330.0, 30 * 1024 * 1024)
    assert (lb.NO_WORKER.status, lb.NO_WORKER.error) == (400, "no workers available")
    assert lb.PROCESSING_TIMEOUT.status == 524
    assert lb.PAYLOAD_TOO_LARGE.status == 413
    assert "choice" in lb.PAYLOAD_TOO_LARGE.error  # no documented code: the message says it is ours
    assert lb.REFUSALS[502] is lb.BAD_GATEWAY
    assert (lb.ENDPOINT_TYPE, lb.SCALER_TYPE) == ("LB", "REQUEST_COUNT")
