"""Hypothesis strategies for the inputs Notus accepts from the outside: job inputs in all three shapes,
OpenAI requests, and arbitrary JSON, biased towards the edges of each parameter's bounds.

The sizes are bounded so a fuzz test stays a test (seconds), and examples are derandomized in CI
(tests/conftest.py registers the profile) so a run that passed once passes again.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from worker.params import NATIVE_KEYS, OPENAI_ROUTES, OPTIONS, ROLES, SAMPLING_PARAMS

scalars = st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=20)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# Numbers just inside and just outside every bound of worker/params.py, and the usual suspects.
edge_numbers = (
    st.sampled_from(
        [-(2**63), -3, -2.0000001, -2, -1, -0.0, 0, 1e-9, 0.5, 0.9, 1, 1.0000001, 2, 2.0000001, 50, 2**63 - 1, 2**63]
    )
    | st.floats(-3, 3)
    | st.integers(-3, 3)
    | st.floats(allow_nan=True, allow_infinity=True)
)
parameter_values = st.one_of(edge_numbers, edge_numbers, json_values)


def messages() -> st.SearchStrategy[Any]:
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(ROLES) | st.text(max_size=8), "content": st.text(max_size=40) | json_values},
        optional={"tool_calls": json_values, "name": st.text(max_size=8)},
    )
    return st.lists(message, min_size=0, max_size=3) | json_values


def chat_inputs() -> st.SearchStrategy[dict[str, Any]]:
    """The native shape (and the nested one): mostly well-formed, each parameter sometimes broken."""
    known = {name: parameter_values for name in (*SAMPLING_PARAMS, *OPTIONS)}
    known["stop"] = st.lists(st.text(max_size=4), max_size=17) | parameter_values
    known["messages"] = messages()
    nested_keys = st.sampled_from(sorted(SAMPLING_PARAMS)) | st.text(max_size=12)
    known["sampling_params"] = st.dictionaries(nested_keys, parameter_values, max_size=3) | json_values
    keys = st.sets(st.sampled_from(NATIVE_KEYS), max_size=8)
    unknown = st.dictionaries(st.text(max_size=10), json_values, max_size=1)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": draw(known["messages"])}
        for key in draw(keys):
            body[key] = draw(known[key])
        if draw(st.integers(0, 9)) == 0:
            body.update(draw(unknown))
        return body

    return build()


def openai_inputs() -> st.SearchStrategy[dict[str, Any]]:
    """RunPod's OpenAI passthrough: a route (usually a real one) and an OpenAI request body."""
    body = st.fixed_dictionaries(
        {"model": st.text(max_size=10)},
        optional={
            "messages": messages(),
            "stream": st.booleans() | json_values,
            "max_tokens": parameter_values,
            "max_completion_tokens": parameter_values,
            "chat_template_kwargs": json_values,
            "prompt": json_values,
        },
    )
    return st.fixed_dictionaries(
        {"openai_route": st.sampled_from(OPENAI_ROUTES) | st.text(max_size=20)},
        optional={"openai_input": body | json_values},
    )
