#!/usr/bin/env bash
# Install the servers the backend plugins' tests run against (plugins/mclease_*/tests).
#
# What it does, each step only when needed (a warm run takes a fraction of a second and prints
# nothing):
#   * apt packages: redis-server (mclease_redis), etcd-server (mclease_etcd), openssl (the etcd
#     TLS test makes its own certificates), faketime (libfaketime: the chaos runner's wall-clock
#     steps). apt-get update runs only if something is missing.
#   * fake-gcs-server (mclease_gcs), built from the Go module proxy by hack/fake-gcs-server.sh into
#     ~/.cache/mclease/bin/fake-gcs-server-<version>/ (about 4 minutes the first time on 2 cores).
#
# What it is not: it starts no server. The tests' fixtures start each server on 127.0.0.1 and a
# free port and stop it afterwards. Needs root (or sudo) for apt, as on CI.
#
# Usage: hack/test-servers.sh [--check]   (--check: exit 1 naming what is missing; install nothing)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
declare -A COMMAND_OF_PACKAGE=(
  [redis-server]=redis-server [etcd-server]=etcd [openssl]=openssl [faketime]=faketime
)

log() { echo "test-servers.sh: $*" >&2; }

missing_packages() {
  local package
  for package in "${!COMMAND_OF_PACKAGE[@]}"; do
    command -v "${COMMAND_OF_PACKAGE[${package}]}" >/dev/null || echo "${package}"
  done
}

install_packages() {
  local sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo"
  log "installing $* (apt)"
  export DEBIAN_FRONTEND=noninteractive
  ${sudo} apt-get update -qq >/dev/null
  ${sudo} apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

main() {
  local missing
  missing="$(missing_packages | sort | tr '\n' ' ')"
  if [[ "${1:-}" == "--check" ]]; then
    [[ -z "${missing// /}" ]] || { log "missing: ${missing}"; exit 1; }
    "${ROOT}/hack/fake-gcs-server.sh" --check >/dev/null
    return
  fi
  # shellcheck disable=SC2086 # one word per package
  [[ -z "${missing// /}" ]] || install_packages ${missing}
  "${ROOT}/hack/fake-gcs-server.sh" >/dev/null
}

main "$@"
