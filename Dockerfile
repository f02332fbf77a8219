# One image for the web server and the Celery workers (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/data \
    ARTIFACTS_DIR=/data/artifacts \
    UPLOADS_DIR=/data/uploads \
    STATIC_ROOT=/app/staticfiles

# libgomp: LightGBM's OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# CPU wheels of torch: no CUDA libraries in the image.
COPY pyproject.toml ./
COPY labelapp/__init__.py labelapp/__init__.py
COPY learning/__init__.py learning/__init__.py
COPY encoders/__init__.py encoders/__init__.py
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -e .

COPY . .
RUN python manage.py collectstatic --noinput -v0

RUN useradd --create-home --uid 1000 app && mkdir -p /data && chown -R app /data /app
USER app
EXPOSE 8000
CMD ["gunicorn", "labelapp.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "300"]
