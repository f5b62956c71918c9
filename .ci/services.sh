#!/usr/bin/env bash
# Starts local Postgres and RabbitMQ if they are not answering, and waits until both are ready.
set -u
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! pg_up; then
  echo "starting postgres"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! rabbit_up; then
  echo "starting rabbitmq"
  rabbitmq-server -detached || true
fi
for _ in $(seq 1 60); do
  if pg_up && rabbit_up; then echo "postgres and rabbitmq are up"; exit 0; fi
  sleep 1
done
pg_up || echo "postgres is not answering on 127.0.0.1:5432"
rabbit_up || echo "rabbitmq is not answering on 127.0.0.1:5672"
exit 1
