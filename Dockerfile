FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GATEWAY_CONFIG=/etc/gateway
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway_engine ./gateway_engine
COPY plugins ./plugins
COPY schemas ./schemas
RUN pip install --no-cache-dir . && rm -rf /src

COPY gateway.yaml /etc/gateway/gateway.yaml
COPY routes.d /etc/gateway/routes.d
COPY workflows.d /etc/gateway/workflows.d
COPY webhooks.d /etc/gateway/webhooks.d
RUN useradd --system --uid 10001 --no-create-home gateway
USER gateway
WORKDIR /etc/gateway
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/api/gateway/health', timeout=2).status == 200 else 1)"
CMD ["gateway-engine", "serve", "--host", "0.0.0.0", "--port", "8080"]
