# One image for web, worker and migrate. torch==2.13.0 from PyPI is its CUDA build on Linux.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFLAB_DATA_DIR=/data \
    PREFLAB_MODELS_DIR=/opt/preflab/models

WORKDIR /srv/preflab
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN pip install -e ".[worker]" && preflab fetch-policy \
    && useradd --create-home --uid 1000 preflab && mkdir -p /data && chown preflab /data
USER preflab

EXPOSE 8000
CMD ["preflab", "serve", "--host", "0.0.0.0", "--port", "8000"]
