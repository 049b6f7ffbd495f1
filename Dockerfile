# pizza-probe: one image for the exporter (the default command) and the sidecar.
#   docker build -t pizza-probe .
#   docker run -p 9816:9816 -e PIZZA_SERVICE_URL=https://pizza-service.example.com pizza-probe
#   docker run -p 9817:9817 pizza-probe sidecar --exporter-url http://exporter:9816
FROM python:3.11-slim

LABEL org.opencontainers.image.title="pizza-probe" \
      org.opencontainers.image.description="Prometheus exporter, synthetic prober and self-healing sidecar for JWT Pizza" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.documentation="README.md"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY setup.cfg pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pizza

USER 10001
EXPOSE 9816 9817
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["pizza-probe", "healthcheck"]
ENTRYPOINT ["pizza-probe"]
CMD ["serve"]
