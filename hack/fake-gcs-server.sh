#!/usr/bin/env bash
# Provide fake-gcs-server (the GCS emulator the mclease_gcs tests run against).
#
# What it does:
#   * Builds github.com/fsouza/fake-gcs-server at FAKE_GCS_VERSION from the Go module proxy into
#     a cache, ~/.cache/mclease/bin/fake-gcs-server-<version>/fake-gcs-server, and prints the
#     path of the binary on stdout.
#   * A stamp file keyed by the version makes a warm run cost nothing (no go invocation).
#
# Why the version: the tests need a release whose DELETE honours ifGenerationMatch
# (fsouza/fake-gcs-server PR #2343, merged 2026-08-25). The newest release the module proxy serves
# is v1.56.1 (tagged 2026-08-24), which predates it; plugins/mclease_gcs/README.md says what that
# means and which test flips when a newer release is pinned here. Do not use the binary of the
# PyPI wrapper: it is older still.
#
# What it is not: an installer of anything else. It downloads no prebuilt binary (only Go modules
# through the module proxy) and starts nothing.
#
# Usage:
#   hack/fake-gcs-server.sh            build if needed; print the binary's path
#   hack/fake-gcs-server.sh --path     print the binary's path without building
#   hack/fake-gcs-server.sh --check    exit 1 (and say why) if the binary is not there
# Progress and build logs go to stderr, so `BIN=$(hack/fake-gcs-server.sh)` works.
set -euo pipefail

FAKE_GCS_VERSION="${MCLEASE_FAKE_GCS_VERSION:-1.56.1}"
MODULE="github.com/fsouza/fake-gcs-server"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Outside the clone by default, so fresh clones (CI) on one machine share one build.
DIR="${MCLEASE_BIN_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/mclease/bin}/fake-gcs-server-${FAKE_GCS_VERSION}"
BIN="${DIR}/fake-gcs-server"

log() { echo "fake-gcs-server.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

is_built() { [[ -x "${BIN}" && -f "${DIR}/.stamp" ]]; }

build() {
  export PATH="/usr/local/go/bin:${PATH}"
  command -v go >/dev/null || die "go is not installed (expected /usr/local/go/bin/go)"
  local tmp start=${SECONDS}
  mkdir -p "$(dirname "${DIR}")"
  tmp="$(mktemp -d "$(dirname "${DIR}")/.building.XXXXXX")"
  trap 'rm -rf "${tmp}"' EXIT
  log "building ${MODULE}@v${FAKE_GCS_VERSION} (first run only; about 4 minutes cold on 2 cores)"
  local output
  if ! output="$(GOBIN="${tmp}" GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0 \
      go install -ldflags="-s -w" "${MODULE}@v${FAKE_GCS_VERSION}" 2>&1)"; then
    echo "${output}" >&2
    die "go install ${MODULE}@v${FAKE_GCS_VERSION} failed"
  fi
  echo "${MODULE}@v${FAKE_GCS_VERSION}" >"${tmp}/.stamp"
  chmod 755 "${tmp}"
  rm -rf "${DIR}"
  mv "${tmp}" "${DIR}"
  trap - EXIT
  log "built in $((SECONDS - start))s: ${BIN}"
}

# One build at a time (parallel make targets, two checkouts sharing MCLEASE_BIN_CACHE).
locked_build() {
  mkdir -p "$(dirname "${DIR}")"
  exec 9>"${DIR}.lock"
  command -v flock >/dev/null && flock 9
  is_built || build
}

main() {
  case "${1:-}" in
    --path) echo "${BIN}" ;;
    --check) is_built || die "no fake-gcs-server at ${BIN}; run hack/test-servers.sh"; echo "${BIN}" ;;
    "") is_built || locked_build; echo "${BIN}" ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
}

main "$@"
