# kongsplit image: build a virtualenv in one stage, copy it into a clean slim Python in the next.
# The final image has no compiler, no pip cache and no source tree; it runs as the numeric user
# 10001, which the Helm chart's securityContext (runAsUser: 10001) matches, and never writes to
# its root filesystem (bytecode is compiled at build time), so readOnlyRootFilesystem works.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# pyproject.toml names README.md as the package's readme, so the build needs it.
COPY pyproject.toml README.md ./
COPY kongsplit ./kongsplit
RUN pip install --no-cache-dir --no-compile . \
    && python -m compileall -q -j 0 /opt/venv/lib

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kongsplit" \
      org.opencontainers.image.description="Argo Rollouts canary weights, pushed straight to Kong upstream targets" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kongsplit/kongsplit"
RUN groupadd --system --gid 10001 kongsplit \
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
