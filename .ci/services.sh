#!/usr/bin/env bash
# Starts local Postgres, RabbitMQ and Redis (the BullMQ peer's store) if they are not answering,
# and waits until all three are ready.
set -u
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

if ! pg_up; then
  echo "starting postgres"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! rabbit_up; then
  echo "starting rabbitmq"
  rabbitmq-server -detached || true
fi
if ! redis_up; then
  echo "starting redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi
for _ in $(seq 1 60); do
  if pg_up && rabbit_up && redis_up; then echo "postgres, rabbitmq and redis are up"; exit 0; fi
  sleep 1
done
pg_up || echo "postgres is not answering on 127.0.0.1:5432"
rabbit_up || echo "rabbitmq is not answering on 127.0.0.1:5672"
redis_up || echo "redis is not answering on 127.0.0.1:6379"
exit 1
