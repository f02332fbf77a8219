#!/usr/bin/env bash
# Serve the app locally: one Celery worker in the background, the web server in the foreground.
# The worker embeds celery beat (-B), which runs the reaper every ITERATION_REAP_INTERVAL_S: an
# iteration whose worker process died is marked failed within a minute, with nobody looking.
set -eu
HOST=${1:-127.0.0.1}
PORT=${2:-8000}
PY=${PY:-.venv/bin/python}
mkdir -p var
$PY -m celery -A labelapp worker -B --loglevel INFO --concurrency 1 >var/worker.log 2>&1 &
WORKER=$!
trap 'kill $WORKER 2>/dev/null || true' EXIT INT TERM
echo "Worker and beat started (pid $WORKER, log var/worker.log)."
echo "Open http://$HOST:$PORT/  (demo logins printed above; Ctrl-C stops both)"
$PY manage.py runserver "$HOST:$PORT" --noreload
