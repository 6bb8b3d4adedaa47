# Notus image, part 1 of 2: the worker's own virtual environment and the model weights.
# Rendered by `notus build` from templates/base.Dockerfile. These layers change only when the base
# image, the worker's dependencies or the weights change; the result is tagged notus-base:<hash of
# those inputs> and reused, so a code change never sends the weights to the daemon again.
#
# The worker runs in its own venv because the runpod SDK and vLLM pin conflicting fastapi
# versions. Its wheels were downloaded on the host for this image's Python: the build needs no
# network. pip runs from its own wheel, so the base image needs neither pip nor ensurepip.
FROM ${base_image} AS deps
COPY wheels/ /opt/notus/wheels/
RUN ${python} -m venv --without-pip /opt/notus/venv \
 && /opt/notus/venv/bin/python /opt/notus/wheels/${pip_wheel}/pip install --no-index --no-cache-dir \
      --disable-pip-version-check --no-warn-script-location --quiet --find-links /opt/notus/wheels ${requirements} \
 && echo /opt/notus/app > "$$(/opt/notus/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/notus-app.pth"

FROM ${base_image}
COPY --from=deps /opt/notus/venv /opt/notus/venv
# The weights in layers of bounded size, config and tokenizer first (Docker pulls layers in parallel):
# together /opt/notus/model plus /opt/notus/weights-manifest.json (sha256 per file).
# With cached weights there are none: RunPod puts the model on the host (see the README).
${weight_copies}
