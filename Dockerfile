# Tarmac in a container: `docker build -t tarmac .`, then
#   docker run -p 8080:8080 -v tarmac-data:/data -v "$PWD/tarmac.yml:/config/tarmac.yml:ro" tarmac
# The SQLite database lives in the /data volume; for several replicas set TARMAC_DATABASE_URL
# to postgresql+asyncpg://... instead. The server applies migrations itself when it starts.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A regular (non-editable) install; the sources are not needed afterwards.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY api ./api
RUN pip install --no-cache-dir . \
    && rm -rf /src

# Run as an unprivileged user that owns only its data directory.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin tarmac \
    && mkdir -p /data /config \
    && chown tarmac:tarmac /data
USER tarmac
WORKDIR /data
VOLUME ["/data"]

# Mount the projects file at /config/tarmac.yml (see tarmac.example.yml).
ENV TARMAC_DATABASE_URL=sqlite+aiosqlite:////data/tarmac.db \
    TARMAC_CONFIG=/config/tarmac.yml \
    TARMAC_PORT=8080

EXPOSE 8080

# slim has no curl; urlopen raises on a 503 (database unreachable), which marks it unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TARMAC_PORT', '8080'), timeout=4)"]

# Exec form: tarmac is PID 1 and receives SIGTERM itself (a shell form would leave /bin/sh as
# PID 1, which does not pass the signal on), so `docker stop` shuts it down cleanly: requests in
# flight finish, the outbox worker ends its round, the database pool closes. SIGTERM is Docker's
# default stop signal; it is spelled out so that a base image's STOPSIGNAL cannot change it.
# Tarmac stops in a few seconds (the worker takes at most 8 s); `docker stop -t 20` (Compose:
# `stop_grace_period: 20s`) leaves room before Docker sends SIGKILL. See docs/operations.md.
STOPSIGNAL SIGTERM
CMD ["tarmac", "serve", "--host", "0.0.0.0"]
