"""RunPod's serverless protocol, written once and blind to the role (as h11 keeps HTTP/1.1's rules).

Nothing here opens a socket or sleeps. The httpx client (runpod.serverless, used by chat), the aiohttp
load sender (bench.runpod_target) and the emulator's route handlers all take their routes, job
states, bodies, limits and retry rules from these modules, so a client and the emulator cannot
drift apart:

    routes      the route table: public routes and the worker-facing ones, as path templates
    job_states  the one JobState enum and which states are final
    bodies      every body both sides write or read: job status, /stream, /health, errors, worker reports
    replies     an HTTP answer that is not a success, read into one ErrorReply (then a NotusError)
    limits      rate limits, concurrency caps, Retry-After, the /stream budget, the retry policy
    follow      the /run -> /stream -> /status sequence as a "next call" machine both clients drive
    lb          load-balancing endpoints: the URL, the worker's health codes, the caps and their answers
"""
