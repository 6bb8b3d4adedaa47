# Notus image, part 2 of 2: baked settings, labels and the worker code, the only layer a code change rebuilds.
# Rendered by `notus build` from templates/app.Dockerfile.
FROM ${base_stage}
# Everything the container needs to start with no network and no token.
ENV ${model_env} \
    NOTUS_SERVED_MODEL_NAME=${served_model_name} \
    NOTUS_VLLM_PYTHON=${vllm_python} \
    HF_HUB_OFFLINE="1" \
    TRANSFORMERS_OFFLINE="1" \
    PYTHONUNBUFFERED="1"
LABEL ${labels}
COPY app/ /opt/notus/app/
ENTRYPOINT ["/opt/notus/venv/bin/python", "-m", "worker"]
CMD []
