"""Deployments on RunPod: plan, apply, remember."""
