# The mclease election controller image: the core distribution with its [controller] extra and
# every storage plugin in plugins/mclease_*, on python:3.11-slim, running as a non-root user.
#   docker build -t mclease-controller:dev .
# Both steps are scripts that tests/deploy runs too (build the wheels, install them in a fresh
# environment, smoke-check, then run the rendered Deployment): what the test runs is what ships.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN hack/build-wheels.sh /wheels

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /wheels /wheels
COPY hack/install-wheels.sh /tmp/install-wheels.sh
RUN /tmp/install-wheels.sh /wheels && rm -rf /wheels /tmp/install-wheels.sh
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["mclease"]
CMD ["controller", "--help"]
