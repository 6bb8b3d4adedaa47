"""RunPod's public addresses, written down once (the settings, the clients and deploy read them here).

The serverless data plane lives under api.runpod.ai/v2/{endpoint_id}, the control plane's GraphQL at
api.runpod.io/graphql; the runpod SDK moves them with RUNPOD_ENDPOINT_BASE_URL and RUNPOD_API_BASE_URL,
which the settings honour too (notus_cli.settings).
"""

from __future__ import annotations

RUNPOD_API_URL = "https://api.runpod.ai/v2"
RUNPOD_GRAPHQL_URL = "https://api.runpod.io/graphql"
RUNPOD_HOST = "api.runpod.ai"  # it and its sibling *.runpod.ai hosts take the account key (their OpenAI route too)
