# One image for every part of the pipeline: `els ingest` (default) and `els process`; see docker-compose.yml.
# Installs the package without its development extras (no embedded broker, no test tools) and runs as `els`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY common ./common
COPY els ./els
COPY ingest ./ingest
COPY processor ./processor
# the dashboard and monitors `els datadog install` creates (read from /app/datadog)
COPY datadog ./datadog
RUN pip install . \
 && useradd --create-home --uid 10001 --user-group els \
 && mkdir -p /app/var \
 && chown els:els /app/var

# var/ holds Faust's local files and the dry-run output; a volume keeps them across container restarts.
VOLUME ["/app/var"]
USER els
EXPOSE 8080 6066
ENTRYPOINT ["els"]
CMD ["ingest"]
