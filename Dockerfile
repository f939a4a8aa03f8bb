# slotcache server image: `slotcache-server` and `clusterctl` in a virtual environment.
#
# The base is a build argument so that machines without access to an image
# registry can build on a Python base made from distribution packages (see
# docs/kubernetes.md); it must provide python3 with the venv module.
ARG BASE_IMAGE=python:3.12-slim

# Build stage: the wheel from this tree, installed with its dependencies into
# /opt/slotcache. Only that venv leaves this stage. pip's downloads go to a build
# cache (not into any layer), so a rebuild after a source change fetches nothing.
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY cluster ./cluster
COPY clients/python ./clients/python
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --quiet --no-deps --wheel-dir /dist . \
    && python3 -m venv --without-pip /opt/slotcache \
    && /opt/build/bin/pip --python /opt/slotcache/bin/python install --quiet \
        /dist/slotcache-*.whl \
    && /opt/slotcache/bin/slotcache-server --help >/dev/null

# Runtime stage: the base, one unprivileged user and the venv; no compiler,
# no pip, no source tree.
FROM ${BASE_IMAGE}
ARG UID=10001
RUN groupadd --system --gid "${UID}" slotcache \
    && useradd --system --uid "${UID}" --gid "${UID}" --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin slotcache \
    && install -d -o "${UID}" -g "${UID}" -m 0750 /data
COPY --from=build /opt/slotcache /opt/slotcache
ENV PATH=/opt/slotcache/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SLOTCACHE_HOST=0.0.0.0 \
    SLOTCACHE_DATA_DIR=/data
USER ${UID}:${UID}
WORKDIR /data
# Client port, cluster bus (client + 10000), Prometheus metrics (client + 1000).
EXPOSE 7000 17000 8000
ENTRYPOINT ["slotcache-server"]
