#!/usr/bin/env bash
# fraud_handbook in PostgreSQL + Redis, two Celery workers (one thread each); iteration 1 with the
# defaults (auto, no encoder yet), the background pretraining, iteration 2 with the defaults.
# Uses its own database (pu_first, dropped first), Redis db 8 and artifacts folder.
# Figures in docs/benchmarks.md ("First iteration"); logs in bench-out/fraud-app/.
set -u
cd "$(dirname "$0")/.."
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/pu_first
export CELERY_BROKER_URL=redis://127.0.0.1:6379/8 CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/8
export ARTIFACTS_DIR=/tmp/bench-artifacts-first LOOP_THREADS=1  # its own: removed first
PY=.venv/bin/python
dropdb -h 127.0.0.1 -U postgres --if-exists pu_first; createdb -h 127.0.0.1 -U postgres pu_first
redis-cli -n 8 flushdb >/dev/null
rm -rf $ARTIFACTS_DIR; mkdir -p $ARTIFACTS_DIR bench-out/fraud-app
$PY manage.py migrate --noinput -v0
s=$(date +%s.%N)
$PY manage.py import_dataset ../shared/data/fraud_handbook --name fraud_handbook --replace > bench-out/fraud-app/import.log 2>&1
echo "import: $(echo "$(date +%s.%N) - $s" | bc) s"
for w in 1 2; do
  $PY -m celery -A labelapp worker --loglevel INFO --concurrency 1 -n w$w@%h > bench-out/fraud-app/worker$w.log 2>&1 &
done
sleep 15
s=$(date +%s.%N)
$PY manage.py run_iteration --dataset fraud_handbook --wait > bench-out/fraud-app/it1.log 2>&1
echo "iteration 1: $(echo "$(date +%s.%N) - $s" | bc) s"; tail -n 1 bench-out/fraud-app/it1.log
s=$(date +%s.%N)
while ! ls $ARTIFACTS_DIR/encoders/*/encoder-*.pt >/dev/null 2>&1; do sleep 5; done
echo "encoder ready after iteration 1 + $(echo "$(date +%s.%N) - $s" | bc) s"
grep -h "encoder_pretrain.*succeeded" bench-out/fraud-app/worker*.log
s=$(date +%s.%N)
$PY manage.py run_iteration --dataset fraud_handbook --wait > bench-out/fraud-app/it2.log 2>&1
echo "iteration 2: $(echo "$(date +%s.%N) - $s" | bc) s"; tail -n 1 bench-out/fraud-app/it2.log
$PY manage.py shell -c "
from labelapp.models import Iteration
for it in Iteration.objects.filter(dataset__name='fraud_handbook').order_by('number'):
    print('#', it.number, it.status); print(it.log[-3000:])
" > bench-out/fraud-app/logs.txt
pkill -f "celery -A labelapp worker" ; echo done
