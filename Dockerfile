# roger-node image: the roger_cluster package on a slim Python, run as a non-root user.
# Build from the repository root:  docker build -t roger-cluster .
# The same image runs rogerctl:    docker run --rm --entrypoint rogerctl roger-cluster nodes
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The node's HTTP server (/healthz, /readyz, /metrics). On 0.0.0.0 so that
# Kubernetes probes and Prometheus reach it from outside the container.
ENV ROGER_HTTP=0.0.0.0:8080
EXPOSE 8080

WORKDIR /src
COPY pyproject.toml README.md ./
COPY roger_cluster ./roger_cluster
RUN pip install . && rm -rf /src

# A numeric UID, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin roger
USER 10001:10001
WORKDIR /tmp

# Liveness: the process answers /healthz. Python's urllib, since the slim image
# has no curl; the port follows ROGER_HTTP (HOST:PORT) if it is overridden.
# Containers that run rogerctl from this image should disable it
# (compose/docker-compose.yml does, for its demo service).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('ROGER_HTTP', ':8080').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# Exec form: roger-node is PID 1 and receives SIGTERM itself, which starts its
# graceful shutdown (stop consuming, drain, requeue, leave the cluster).
STOPSIGNAL SIGTERM
ENTRYPOINT ["roger-node"]
