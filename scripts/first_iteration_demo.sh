#!/usr/bin/env bash
# The demo's first iterations as a new user sees them: a fresh clone (sharing this checkout's
# .venv), `make run` on its embedded defaults (SQLite, one local worker), then two iterations with
# the defaults. Figures in docs/benchmarks.md ("First iteration").
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
rm -rf /tmp/demo-clone && git clone -q "$REPO" /tmp/demo-clone && cd /tmp/demo-clone
ln -s "$REPO/.venv" .venv
touch -d '2000-01-01' pyproject.toml   # the venv stamp is newer: make run does not reinstall
( make run PORT=8765 > /tmp/demo-run.log 2>&1 & )
for i in $(seq 1 120); do curl -s -o /dev/null http://127.0.0.1:8765/ && break; sleep 2; done
echo "server up $(date +%T)"
t0=$(date +%s.%N)
.venv/bin/python manage.py run_iteration --dataset demo-cards --wait > /tmp/demo-it1.log 2>&1
t1=$(date +%s.%N)
echo "iteration 1 wall: $(echo "$t1 - $t0" | bc) s"
tail -n 1 /tmp/demo-it1.log
sleep 5
t0=$(date +%s.%N)
.venv/bin/python manage.py run_iteration --dataset demo-cards --wait > /tmp/demo-it2.log 2>&1
t1=$(date +%s.%N)
echo "iteration 2 wall (queued behind the background pretraining): $(echo "$t1 - $t0" | bc) s"
tail -n 1 /tmp/demo-it2.log
grep -i "encoder_pretrain\|succeeded in" var/worker.log | tail -n 8
pkill -f "runserver 127.0.0.1:8765"; pkill -f "celery -A labelapp worker -B"
