#!/usr/bin/env bash
# Provide mclease-go-candidate (tests/e2e/gocandidate: client-go's leader elector with a
# MultiClusterLease lock, the Go application pod of the end-to-end tests).
#
# What it does:
#   * Builds tests/e2e/gocandidate with CGO_ENABLED=0 -trimpath into a cache keyed by the hash of
#     its source files (go.mod, go.sum, *.go but *_test.go),
#     ~/.cache/mclease/go-candidate/<hash>/mclease-go-candidate (MCLEASE_GO_CANDIDATE_CACHE
#     overrides the parent folder), and prints the path of the binary on stdout.
#   * A binary already there for the same sources makes a warm run cost nothing (no go
#     invocation). Its modules come from the module cache or the Go module proxy.
#
# What it is not: an installer of anything else. It downloads no prebuilt binary and starts
# nothing.
#
# Usage:
#   hack/go-candidate.sh               build if needed; print the binary's path
#   hack/go-candidate.sh --print-path  print the binary's path without building
#   hack/go-candidate.sh --check       exit 1 (and say why) if the binary is not there
# Progress and build logs go to stderr, so `BIN=$(hack/go-candidate.sh)` works.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${ROOT}/tests/e2e/gocandidate"
# Outside the clone by default, so fresh clones (CI) on one machine share one build.
PARENT="${MCLEASE_GO_CANDIDATE_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/mclease/go-candidate}"
NAME="mclease-go-candidate"

# shellcheck source=lib/cached-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"

# The hash of the sources: every file's name and content, in a fixed order.
source_hash() {
  [[ -f "${SRC}/go.mod" ]] || die "no ${SRC}/go.mod"
  (
    cd "${SRC}"
    local files=(go.mod go.sum)
    local f
    for f in *.go; do [[ "${f}" == *_test.go ]] || files+=("${f}"); done
    printf '%s\n' "${files[@]}" | LC_ALL=C sort | while read -r f; do sha256sum -- "${f}"; done
  ) | sha256sum | cut -c1-16
}

DIR="${PARENT}/$(source_hash)"
BIN="${DIR}/${NAME}"


build() {
  export PATH="/usr/local/go/bin:${PATH}"
  command -v go >/dev/null || die "go is not installed (expected /usr/local/go/bin/go)"
  local tmp start=${SECONDS}
  tmp="$(mktemp -d "${PARENT}/.building.XXXXXX")"
  trap 'rm -rf "${tmp}"' EXIT
  log "building ${NAME} from ${SRC} (about 2.5 minutes cold on 2 cores)"
  if ! (cd "${SRC}" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" \
      go build -trimpath -ldflags="-s -w" -o "${tmp}/${NAME}" . >&2); then
    die "go build in ${SRC} failed"
  fi
  chmod 755 "${tmp}"
  rm -rf "${DIR}"
  mv "${tmp}" "${DIR}"
  trap - EXIT
  log "built in $((SECONDS - start))s: ${BIN}"
}

main "$@"
