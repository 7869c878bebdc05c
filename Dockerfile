# syntax=docker/dockerfile:1
# pim-hub: one image for every service (`hub <command>`). Small, non-root, pinned.
# Build from the repository root: docker build -t pim-hub .
#
# The image holds the product only: the wheel is built from a context without the local
# development stack and the sandboxes (see .dockerignore), and installed from the lock file
# the tests ran with, which holds the `console` extra (`hub console`) besides the services.
# `hub up`, `hub demo` and `hub sandbox` say they are not installed.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/hub
WORKDIR /src
# Dependencies first, from the lock file, so a code change reuses this layer.
COPY requirements/runtime.lock ./requirements/runtime.lock
RUN /opt/hub/bin/pip install --require-virtualenv -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/hub/bin/pip install --require-virtualenv --no-deps . \
    && find /opt/hub -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="pim-hub" \
      org.opencontainers.image.description="Akeneo PIM to commerce targets over Kafka"
ENV PATH=/opt/hub/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HUB_LOG_FORMAT=json
RUN groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /home/hub --create-home hub
COPY --from=build /opt/hub /opt/hub
WORKDIR /home/hub
USER 10001:10001
EXPOSE 8000 9100
ENTRYPOINT ["hub"]
CMD ["--help"]
