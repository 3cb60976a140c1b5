# gateway-engine: `docker build -t gateway-engine .` (see docs/docker.md)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GATEWAY_CONFIG=/etc/gateway GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8080
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gateway_engine ./gateway_engine
COPY plugins ./plugins
COPY schemas ./schemas
RUN pip install --no-cache-dir . \
    && rm -rf /src \
    && useradd --system --uid 10001 --user-group --no-create-home gateway \
    && mkdir -p /etc/gateway/routes.d

# The default config: a gateway with no backend of its own; mount routes.d (or the whole directory) over it.
COPY docker/gateway.yaml /etc/gateway/gateway.yaml
# The city-platform deployment, opt-in: -e GATEWAY_CONFIG=/opt/gateway-engine/city-platform
COPY gateway.yaml /opt/gateway-engine/city-platform/gateway.yaml
COPY routes.d /opt/gateway-engine/city-platform/routes.d
COPY workflows.d /opt/gateway-engine/city-platform/workflows.d
COPY webhooks.d /opt/gateway-engine/city-platform/webhooks.d

USER 10001:10001
WORKDIR /etc/gateway
EXPOSE 8080
# {base_path}/health of $GATEWAY_CONFIG's gateway.yaml on $GATEWAY_PORT; exit 0 on a 200
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-m", "gateway_engine.cli.healthcheck"]
CMD ["gateway-engine", "serve"]
