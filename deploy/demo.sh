#!/usr/bin/env bash
# `make demo`: the simulator, the suspension service in a loop and the web console, on SQLite.
# Ctrl-C stops everything. Later issues add the agents, the probe and the rules.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export DEBUG=1
mkdir -p var
PORT=${ONESIM_PORT:-2633}
echo "oneadmin:demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" > var/one_auth
chmod 600 var/one_auth
export ONE_XMLRPC="http://127.0.0.1:$PORT/RPC2" ONE_AUTH="$PWD/var/one_auth"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo stopped"
}
trap cleanup INT TERM EXIT

$BIN/python manage.py migrate --noinput >/dev/null
$BIN/python manage.py shell -c "
from django.contrib.auth.models import User
if not User.objects.filter(username='admin').exists():
    User.objects.create_superuser('admin', 'admin@example.org', 'admin')
"
echo "web console: http://127.0.0.1:8000/  (login admin / admin)"

$BIN/python -m idlevm.onesim --listen "127.0.0.1:$PORT" --auth "$(cat var/one_auth)" \
  --hosts 5 --vms 60 --seed 7 --transition-seconds 5 --idle-data 20 &
pids+=($!)
sleep 1
$BIN/python manage.py suspend_service --loop --interval "${DEMO_INTERVAL:-20}" &
pids+=($!)
$BIN/python manage.py runserver --noreload 127.0.0.1:8000 &
pids+=($!)
wait -n "${pids[@]}"
