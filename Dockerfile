# pizza-probe: one image for the exporter (the default command), the sidecar and the simulator.
#   docker build -t pizza-probe .
#   docker run -p 9816:9816 -e PIZZA_SERVICE_URL=https://pizza-service.example.com pizza-probe
#   docker run -p 9817:9817 -v incidents:/var/lib/pizza-probe/incidents pizza-probe sidecar \
#       --exporter-url http://exporter:9816 --incident-dir /var/lib/pizza-probe/incidents
# It runs as uid and gid 10001. The health check follows the command: with no URL,
# `pizza-probe healthcheck` reads the command line and environment of the container's
# pizza-probe process and checks where that command listens (docs/deploy.md).

# Stage 1 builds the wheel; nothing else of it reaches the image.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY setup.cfg pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2, the image: the pinned dependencies, then the wheel. No source tree, no build files.
FROM python:3.11-slim

LABEL org.opencontainers.image.title="pizza-probe" \
      org.opencontainers.image.description="Prometheus exporter, synthetic prober and self-healing sidecar for JWT Pizza" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.documentation="README.md"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The user, uid and gid 10001 (the Kubernetes manifest's runAsUser and runAsGroup), and the
# incident directory, owned by it: a named volume mounted there starts with that ownership.
RUN groupadd --system --gid 10001 pizza \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin pizza \
    && mkdir -p /var/lib/pizza-probe/incidents \
    && chown -R 10001:10001 /var/lib/pizza-probe

# Dependencies first, in their own layer: rebuilt only when requirements.txt changes. Every
# package under install_requires is pinned there with the hashes of its files (`make
# requirements`): pip refuses anything else, so a build installs exactly what was reviewed.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels

USER 10001:10001
WORKDIR /var/lib/pizza-probe
EXPOSE 9816 9817
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["pizza-probe", "healthcheck"]
ENTRYPOINT ["pizza-probe"]
CMD ["serve"]
