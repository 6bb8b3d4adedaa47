"""`notus bench`: latency, throughput, goodput and cost of a chat server, by vLLM's definitions.

    workload       prompts to send (random of given token lengths, or a ShareGPT-style file)
    endpoints      which server: the target flags (read by notus_cli.targets, as for chat) plus --route
    senders        how one request goes out and is timed (any OpenAI-compatible server; the Target protocol)
    runpod_target  the sender for RunPod's job API (/run, /stream, /status: queue delay, execution time)
    load           how requests are sent (a concurrency or request-rate sweep) and when to stop
    chunks         tokens and inter-token gaps from streamed chunks
    metrics        what each request measured and what a level adds up to
    coldstart      a cold start split into queue, worker start and first token
    cost           dollars per million output tokens and per thousand requests
    run            one run from options to results
    temporary      --deploy: a run against an endpoint deployed for it and removed after (deploy_hooks)
    report, files, plots, live, compare   how results are shown and kept

Its modules import aiohttp, numpy and matplotlib: the CLI imports them only when bench runs.
"""

DEFAULT_INPUT_LEN = 1024
DEFAULT_OUTPUT_LEN = 128
