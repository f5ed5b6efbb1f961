#!/usr/bin/env bash
# Provide a helm binary for the chart tests (tests/manifests/test_helm.py, charts/mclease).
#
# What it does:
#   * Builds helm's command (helm.sh/helm/v<major>/cmd/helm) from the Go module proxy with
#     CGO_ENABLED=0 -trimpath into a cache keyed by the version,
#     ~/.cache/mclease/helm/<version>/helm (MCLEASE_HELM_CACHE overrides the parent folder), and
#     prints the binary's path on stdout. MCLEASE_HELM_VERSION picks the version (default 4.3.1;
#     3.x builds helm.sh/helm/v3 the same way).
#   * The build is a small wrapper module that requires helm and, to reuse what
#     hack/kube-assets.sh already downloaded and compiled, the Kubernetes modules (k8s.io/api,
#     client-go, ...) at the patch release kube-assets builds, v0.37.2, where helm requires the
#     same minor release (v0.37.1 for 4.3.1). Only a patch upgrade: never another minor, never
#     older (it is a `require`, and Go picks the highest).
#     Go's own GOPATH/GOMODCACHE/GOCACHE are used (or the caller's), as kube-assets.sh does.
#     `helm version` reports the release it was built from.
#   * A binary already there for the version makes a warm run cost nothing (no go invocation).
#
# What it is not: an installer of anything else. It downloads no prebuilt binary (only Go modules
# through the module proxy), installs no plugin and starts nothing.
#
# Usage:
#   hack/helm.sh               build if needed; print the binary's path
#   hack/helm.sh --print-path  print the binary's path without building
#   hack/helm.sh --check       exit 1 (and say why) if the binary is not there
# Progress and build logs go to stderr, so `HELM=$(hack/helm.sh)` works.
set -euo pipefail

HELM_VERSION="${MCLEASE_HELM_VERSION:-4.3.1}"
HELM_VERSION="${HELM_VERSION#v}"
HELM_MAJOR="${HELM_VERSION%%.*}"
HELM_MODULE="helm.sh/helm/v${HELM_MAJOR}"
# The Kubernetes modules hack/kube-assets.sh builds (MCLEASE_K8S_VERSION 1.37.2 -> v0.37.2).
K8S_MODULES_VERSION="${MCLEASE_HELM_K8S_MODULES_VERSION:-v0.37.2}"
# Outside the clone by default, so fresh clones (CI) on one machine share one build.
PARENT="${MCLEASE_HELM_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/mclease/helm}"
DIR="${PARENT}/${HELM_VERSION}"
BIN="${DIR}/helm"

# shellcheck source=lib/cached-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"


go_env() {
  export PATH="/usr/local/go/bin:${PATH}"
  export GOFLAGS="-buildvcs=false -mod=mod"
  export CGO_ENABLED=0
  command -v go >/dev/null || die "go is not installed (expected /usr/local/go/bin/go)"
}

# The k8s.io modules helm requires at v0.x (k8s.io/api, client-go, ...; not klog or kube-openapi)
# in the same minor release as K8S_MODULES_VERSION: only a patch upgrade, never another minor.
helm_k8s_modules() {
  local gomod="$1" minor="${K8S_MODULES_VERSION%.*}"
  awk -v minor="${minor}" '$1 ~ /^k8s\.io\/[a-z0-9-]+$/ && index($2, minor ".") == 1 { print $1 }' \
    "${gomod}" | sort -u
}

write_wrapper() {
  local dir="$1" helm_mod
  helm_mod="$(go mod download -json "${HELM_MODULE}@v${HELM_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "${helm_mod}" ]] || die "could not download ${HELM_MODULE}@v${HELM_VERSION} from the module proxy"
  {
    echo "module mclease.local/helmbuild"
    echo
    echo "go 1.26.0"
    echo
    echo "require ${HELM_MODULE} v${HELM_VERSION}"
    echo
    echo "require ("
    helm_k8s_modules "${helm_mod}" | while read -r m; do echo "	${m} ${K8S_MODULES_VERSION}"; done
    echo ")"
  } >"${dir}/go.mod"
  cat >"${dir}/tools.go" <<GO
//go:build tools

// Package tools pins the helm command this wrapper module builds.
package tools

import _ "${HELM_MODULE}/cmd/helm"
GO
}

build() {
  go_env
  local tmp work start=${SECONDS}
  tmp="$(mktemp -d "${PARENT}/.building.XXXXXX")"
  work="$(mktemp -d)"
  trap 'rm -rf "${tmp}" "${work}"' EXIT
  log "building helm v${HELM_VERSION} (wrapper module in ${work}; about 6 minutes cold on 2 cores)"
  write_wrapper "${work}"
  local ldflags="-s -w -X ${HELM_MODULE}/internal/version.version=v${HELM_VERSION} -X ${HELM_MODULE}/internal/version.gitTreeState=clean"
  if ! (cd "${work}" && go build -trimpath -ldflags="${ldflags}" -o "${tmp}/helm" "${HELM_MODULE}/cmd/helm" >&2); then
    die "go build of ${HELM_MODULE}/cmd/helm@v${HELM_VERSION} failed"
  fi
  "${tmp}/helm" version --short >/dev/null || die "the built helm does not run"
  chmod 755 "${tmp}"
  rm -rf "${DIR}" "${work}"
  mv "${tmp}" "${DIR}"
  trap - EXIT
  log "built in $((SECONDS - start))s: ${BIN}"
}

main "$@"
