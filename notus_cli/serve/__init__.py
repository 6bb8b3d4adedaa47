"""`notus serve`: a local RunPod endpoint (emulator, worker processes, one vLLM) on loopback."""
