"""`notus chat`: a conversation with a Notus endpoint, a local `notus serve` or any OpenAI-compatible server.

session.py   the conversation (system prompt, turns, sampling settings), trimming, save/load
sampling.py  /set and --set: text to a value the worker's bounds accept
personas/    named system prompts (user config dir; shipped examples such as counselor.toml)
backends.py  how an answer is fetched: RunPod jobs or an OpenAI-compatible server
target_backend.py  which backend a command line means (NAME, --endpoint, --local, --base-url)
answer.py    one answer as it streams in: text, reasoning, timings
turn.py      ask one question: trim to fit, stream, drop more when the server says it is too long
render.py    the terminal display (rich Live Markdown, reasoning, stats line) and the plain one
commands.py  the slash commands
repl.py      the prompt_toolkit loop (history, multi-line input, Ctrl-C)
modes.py     the whole command: interactive, or one answer for pipes and --json
"""
