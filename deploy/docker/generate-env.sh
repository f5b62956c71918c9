#!/usr/bin/env bash
# Writes the secrets docker-compose.yml requires into `.env` beside it, freshly generated:
#
#   deploy/docker/generate-env.sh && docker compose up -d
#
# A variable the file already sets is never changed, so running it again is safe: it only adds
# what is missing (e.g. ENCRYPTION_KEY to an older .env). Another file: pass its path.
#
#   ADMIN_API_KEY                        64 hex characters: `Authorization: Bearer <key>` on the API
#   ENCRYPTION_KEY                       base64 of 32 random bytes: encrypts endpoint secrets at rest
#   POSTGRES_PASSWORD, RABBITMQ_PASSWORD 48 hex characters (hex, so they need no escaping in URLs)
#   GRAFANA_ADMIN_PASSWORD               24 hex characters (profile observability)
#
# Postgres and RabbitMQ take their password when their volume is first created: on an existing
# volume, put the password it was created with in .env first (docs/deploy.md, "Secrets").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
file=${1:-$root/.env}

# n random bytes from the kernel, as hex or base64 (no openssl needed).
hex() { head -c "$1" /dev/urandom | od -An -v -tx1 | tr -d ' \n'; }
b64() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }

names=(ADMIN_API_KEY ENCRYPTION_KEY POSTGRES_PASSWORD RABBITMQ_PASSWORD GRAFANA_ADMIN_PASSWORD)
set_in_file() { grep -Eqs "^[[:space:]]*(export[[:space:]]+)?$1=${2:-}" "$file"; }

# A variable set to nothing would stop compose, and is not ours to replace: say so, change nothing.
for name in "${names[@]}"; do
  if set_in_file "$name" '[[:space:]]*$'; then
    echo "$file sets $name to nothing: delete that line and run this again." >&2
    exit 1
  fi
done

umask 077 # a new file is readable by its owner only
touch "$file"
[ -z "$(tail -c 1 "$file")" ] || echo >>"$file" # appended lines must not join the last one

added=()
for name in "${names[@]}"; do
  set_in_file "$name" && continue
  case $name in
    ADMIN_API_KEY) value=$(hex 32) ;;
    ENCRYPTION_KEY) value=$(b64 32) ;;
    GRAFANA_ADMIN_PASSWORD) value=$(hex 12) ;;
    *) value=$(hex 24) ;;
  esac
  printf '%s=%s\n' "$name" "$value" >>"$file"
  added+=("$name")
done

if [ "${#added[@]}" -eq 0 ]; then
  echo "$file already sets every secret; nothing changed."
else
  echo "$file: generated ${added[*]}."
fi
echo "Keep ENCRYPTION_KEY safe: endpoint secrets cannot be decrypted without it."
echo "The admin key: grep ADMIN_API_KEY '$file'"
