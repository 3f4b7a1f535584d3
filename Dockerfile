# PACS Portal image: the same pieces `make run` starts, one per container (see docker-compose.yml).
# Not built or run in CI (no Docker engine there); kept in step with the Makefile by hand.
# The viewer's pinned npm package (vendor/viewer), as `make viewer` installs it.
FROM node:20-bookworm-slim AS viewer
WORKDIR /viewer
COPY vendor/viewer/package.json vendor/viewer/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
COPY --from=viewer /viewer/node_modules/@ohif/app/dist /tmp/ohif-dist
RUN python -m apps.viewer.site --dist /tmp/ohif-dist --site vendor/viewer/site && rm -rf /tmp/ohif-dist
RUN DEBUG=1 python manage.py collectstatic --noinput -v 0
RUN useradd --system --home /app portal && mkdir -p /data && chown portal /data
USER portal
VOLUME /data
EXPOSE 8000 11112
# web by default; the compose file runs `qcluster`, `receive`, `watch_inboxes` with the same image
CMD ["sh", "-c", "python manage.py migrate --noinput && gunicorn pacsportal.wsgi:application --bind 0.0.0.0:8000 --workers 3 --threads 4 --access-logfile - --access-logformat '%(h)s \"%(m)s %(U)s\" %(s)s %(b)s'"]
