# The mclease election controller image: the core distribution and every storage plugin in
# plugins/, on python:3.11-slim, running as a non-root user.
#   docker build -t mclease-controller:dev .
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# Build wheels for the core and each plugin (a plugin is a folder of plugins/ with a pyproject.toml).
RUN set -eu; \
    pip wheel --wheel-dir /wheels --no-deps . ; \
    for plugin in plugins/*/; do \
      if [ -f "${plugin}pyproject.toml" ]; then pip wheel --wheel-dir /wheels --no-deps "${plugin}"; fi; \
    done

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["mclease"]
CMD ["controller", "--help"]
