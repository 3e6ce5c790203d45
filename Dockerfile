# kongsplit image: build a virtualenv in one stage, copy it into a clean slim Python in the next.
# The final image has no compiler, no pip, setuptools or wheel (neither in the venv nor in the
# base), no pip cache and no source tree; it runs as the numeric user 10001, which the Helm chart's
# securityContext (runAsUser: 10001) matches, needs no shell (ENTRYPOINT, CMD and HEALTHCHECK are
# exec form; the chart probes over HTTP) and never writes to its root filesystem (bytecode is
# compiled at build time), so readOnlyRootFilesystem works.
#
# The base, pinned by digest: python:3.11.16-slim-bookworm (Python 3.11, the version CI tests
# on), the multi-platform index as docker-library/repo-info records it (repos/python/remote/
# 3.11.16-slim-bookworm.md at commit 422f3cfe488d, image built 2026-09-01; its linux/amd64
# manifest is sha256:b1add8a6f2ac…, 47.8 MB compressed). No registry was reachable where this was
# written, so the digest was read there, not resolved by a pull. The digest decides what is
# pulled; the tag is there for people. To move it, resolve the tag again and replace both:
#   docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.16-slim-bookworm@sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# A venv without pip: the base image's pip installs into it from outside (--python), so pip,
# setuptools and wheel never enter the venv that ships.
RUN python -m venv --without-pip /opt/venv
WORKDIR /src
# pyproject.toml names README.md as the package's readme, so the build needs it.
COPY pyproject.toml README.md ./
COPY kongsplit ./kongsplit
RUN python -m pip --python /opt/venv/bin/python install --no-compile . \
    && python -m compileall -q -j 0 /opt/venv/lib

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kongsplit" \
      org.opencontainers.image.description="Argo Rollouts canary weights, pushed straight to Kong upstream targets" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kongsplit/kongsplit"
# The base image's own pip, setuptools and wheel go too (and packaging, which the base installs
# only for wheel), with the copy ensurepip would reinstall and the base's `pip` -> `pip3` symlink
# (pip's uninstall leaves it dangling): nothing installs packages at run time. A later layer hides
# files, it cannot shrink the one below: their bytes stay in the base layer, out of reach.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel packaging \
    && rm -rf /usr/local/lib/python3*/ensurepip /usr/local/bin/pip \
    && groupadd --system --gid 10001 kongsplit \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin kongsplit
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 9102
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9102/healthz', timeout=2)"]
ENTRYPOINT ["kongsplit"]
CMD ["run"]
