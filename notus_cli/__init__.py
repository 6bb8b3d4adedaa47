"""Notus: run NVIDIA Nemotron-3 Nano as a private chat service on RunPod Serverless."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("notus")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
