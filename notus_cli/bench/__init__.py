"""`notus bench`: latency, throughput, goodput and cost of a chat server, by vLLM's definitions.

    workload  prompts to send (random of given token lengths, or a ShareGPT-style file)
    targets   where they go (any OpenAI-compatible server; the Target protocol for others)
    load      how they are sent (a concurrency or request-rate sweep) and when to stop
    metrics   what each request measured and what a level adds up to
    cost      dollars per million output tokens and per thousand requests
    run       one run from options to results
    report, files, plots, live, compare   how results are shown and kept

Its modules import aiohttp, numpy and matplotlib: the CLI imports them only when bench runs.
"""

DEFAULT_INPUT_LEN = 1024
DEFAULT_OUTPUT_LEN = 128
