#!/usr/bin/env bash
# Starts the local PostgreSQL, Redis and NATS JetStream the test suite talks to, if they are down.
set -uo pipefail
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "qbank: starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  echo "qbank: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
if [ -x "$NATS" ] && ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  echo "qbank: starting NATS JetStream"
  mkdir -p /var/lib/nats 2>/dev/null || true
  nohup "$NATS" -js -sd /var/lib/nats -a 127.0.0.1 -p 4222 >/dev/null 2>&1 &
  for _ in $(seq 1 20); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.5; done
fi
exit 0
