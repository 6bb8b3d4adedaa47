"""The Typer commands, wired in notus_cli/app.py: each parses its flags, calls one library function and
renders the result through notus_cli.output.Output. The work lives in the libraries:

    serve   notus_cli.serve (stack, supervise, vllm)      chat    notus_cli.chat (targets, run)
    build   notus_cli.image                               bench   notus_cli.bench (run, temporary, compare)
    deploy  notus_cli.deploy, notus_cli.runpod            model   notus_cli.model

Where a request goes (NAME, --endpoint, --local, --base-url) is read by notus_cli.targets for chat and
bench alike; errors are raised as notus_cli.errors types and printed by the entry point only.
"""
