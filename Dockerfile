# syntax=docker/dockerfile:1
# pim-hub: one image for every service (`hub <command>`). Small, non-root, pinned.
# Build from the repository root: docker build -t pim-hub:0.1.0 .

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/hub
WORKDIR /app
# Dependencies first (each pinned exactly in pyproject.toml) so a code change reuses this layer.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && /opt/hub/bin/pip install --require-virtualenv -r /tmp/requirements.txt
COPY hub ./hub
COPY schemas ./schemas
COPY services ./services
COPY drivers ./drivers
COPY sandbox ./sandbox
COPY infra/sql ./infra/sql
# Editable install: the entry points (`hub`, drivers) are registered while the code stays in
# /app, where hub.db finds infra/sql/migrations.
RUN /opt/hub/bin/pip install --require-virtualenv --no-deps -e . \
    && find /app /opt/hub -name '__pycache__' -prune -exec rm -rf {} +

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
COPY --from=build /app /app
WORKDIR /home/hub
USER 10001:10001
EXPOSE 8000 9100
ENTRYPOINT ["hub"]
CMD ["--help"]
