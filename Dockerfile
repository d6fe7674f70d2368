# roger-node image: the roger_cluster package on a slim Python, run as a non-root user.
# Build from the repository root:  docker build -t roger-cluster .
# The same image runs rogerctl:    docker run --rm --entrypoint rogerctl roger-cluster nodes
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY roger_cluster ./roger_cluster
RUN pip install . && rm -rf /src

# A numeric UID, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin roger
USER 10001:10001
WORKDIR /tmp

# Exec form: roger-node is PID 1 and receives SIGTERM itself, which starts its
# graceful shutdown (stop consuming, drain, requeue, leave the cluster).
STOPSIGNAL SIGTERM
ENTRYPOINT ["roger-node"]
