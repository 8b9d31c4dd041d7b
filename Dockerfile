# The registry as a container image: gunicorn on port 5000, data under /var/lib/ociregistry.
#   docker build -t ociregistry .
#   docker run -d -p 5000:5000 -v registry-data:/var/lib/ociregistry ociregistry
# Settings: OCIREGISTRY_<SECTION>__<KEY> variables (OCIREGISTRY_DATABASE__URL=postgresql+psycopg://...
# for several instances), or a YAML file: -v $PWD/config.yml:/etc/ociregistry/config.yml:ro and
# append "--config /etc/ociregistry/config.yml" to the run command (arguments of `ociregistry serve`).
# Without auth.* settings anyone who reaches the port may push and delete (serve warns):
# give it an htpasswd file (OCIREGISTRY_AUTH__HTPASSWD) or use deploy/docker-compose.yml.
# The health check speaks plain HTTP: with tls.* configured, override it (or terminate TLS in
# a reverse proxy, as docs/deployment.md does).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 ociregistry \
 && useradd --system --uid 10001 --gid ociregistry --home-dir /var/lib/ociregistry \
            --shell /usr/sbin/nologin ociregistry \
 && mkdir -p /var/lib/ociregistry /etc/ociregistry \
 && chown ociregistry:ociregistry /var/lib/ociregistry

WORKDIR /opt/ociregistry
COPY pyproject.toml README.md LICENSE app.py ./
COPY src ./src
RUN pip install --no-compile . && rm -rf /opt/ociregistry/src /root/.cache

USER ociregistry
WORKDIR /var/lib/ociregistry
ENV OCIREGISTRY_DATA_DIR=/var/lib/ociregistry
VOLUME ["/var/lib/ociregistry"]
EXPOSE 5000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4)"]
ENTRYPOINT ["ociregistry", "serve"]
