"""Credentials for a private container registry, so RunPod can pull the image a template names.

RunPod keeps them as a registry auth (GraphQL `saveRegistryAuth`) that a template references; Notus
finds them on this machine first. The password is a SecretStr from the moment it is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr


@dataclass(frozen=True)
class RegistryCredentials:
    host: str  # e.g. "ghcr.io"
    username: str
    password: SecretStr
    source: str  # where they came from, for messages (never the password)
