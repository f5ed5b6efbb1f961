#!/usr/bin/env bash
# Provide kube-apiserver, kubectl and etcd for the Kubernetes test bed (tests/kube).
#
# What it does:
#   * If KUBEBUILDER_ASSETS is set (the envtest convention), it only checks that the
#     directory holds kube-apiserver, etcd and kubectl and prints it.
#   * Otherwise it builds the binaries from the Go module proxy into a git-ignored cache,
#     ~/.cache/mclease/kube-assets/<k8s-version>-etcd<etcd-version>/ (MCLEASE_KUBE_ASSETS_CACHE
#     overrides the parent folder), and prints that directory.
#     kube-apiserver and kubectl come from k8s.io/kubernetes (its staging modules k8s.io/api,
#     k8s.io/apimachinery, ... pinned to the matching v0.x with replace directives in a small
#     wrapper module); etcd comes from go.etcd.io/etcd/server/v3.
#   * A stamp file keyed by the versions makes a warm run cost nothing.
#
# What it is not: a general Kubernetes installer. It downloads no prebuilt binaries (only Go
# modules through the module proxy) and starts nothing.
#
# Usage:
#   hack/kube-assets.sh               build if needed; print the assets directory on stdout
#   hack/kube-assets.sh --print-dir   print the assets directory without building
#   hack/kube-assets.sh --print-etcd  build if needed; print the path of the etcd binary
#   hack/kube-assets.sh --check       exit 1 (and say why) if the binaries are not there
# Progress and build logs go to stderr, so `ASSETS=$(hack/kube-assets.sh)` works.
set -euo pipefail

K8S_VERSION="${MCLEASE_K8S_VERSION:-1.37.2}"
ETCD_VERSION="${MCLEASE_ETCD_VERSION:-3.7.3}"
BINARIES=(kube-apiserver etcd kubectl)

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }
ROOT="$(repo_root)"
# Outside the clone by default, so fresh clones (CI) on one machine share one build.
USER_CACHE="${XDG_CACHE_HOME:-${HOME}/.cache}/mclease"
CACHE_DIR="${MCLEASE_KUBE_ASSETS_CACHE:-${USER_CACHE}/kube-assets}/${K8S_VERSION}-etcd${ETCD_VERSION}"

log() { echo "kube-assets: $*" >&2; }
die() { log "error: $*"; exit 1; }

assets_dir() {
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then echo "${KUBEBUILDER_ASSETS}"; else echo "${CACHE_DIR}"; fi
}

missing_binaries() {
  local dir="$1" b
  shift
  for b in "$@"; do [[ -x "${dir}/${b}" ]] || echo "${b}"; done
}

is_complete() {
  local dir="$1"
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    # envtest's convention: kube-apiserver and etcd; kubectl may come from PATH instead.
    [[ -z "$(missing_binaries "${dir}" kube-apiserver etcd)" ]] || return 1
    [[ -x "${dir}/kubectl" ]] || command -v kubectl >/dev/null ||
      log "warning: no kubectl in ${dir} nor on PATH; tests that run kubectl will fail"
    return 0
  fi
  [[ -z "$(missing_binaries "${dir}" "${BINARIES[@]}")" && -f "${dir}/.stamp" ]]
}

go_env() {
  export PATH="/usr/local/go/bin:${PATH}"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}"
  export CGO_ENABLED=0
  command -v go >/dev/null || die "go is not installed (expected /usr/local/go/bin/go)"
}

# The staging modules k8s.io/kubernetes requires at v0.0.0 (replaced by ./staging in its own
# go.mod; replace directives of a dependency are ignored, so the wrapper must pin them).
staging_modules() {
  local gomod="$1"
  sed -n 's/^[[:space:]]*\(k8s\.io\/[a-z0-9-]*\) v0\.0\.0[[:space:]]*$/\1/p' "${gomod}" | sort -u
}

write_k8s_wrapper() {
  local dir="$1" k8s_mod minor
  minor="0.${K8S_VERSION#1.}"
  k8s_mod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "${k8s_mod}" ]] || die "could not download k8s.io/kubernetes@v${K8S_VERSION} from the module proxy"
  {
    echo "module mclease.local/kubeassets"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo
    echo "replace ("
    staging_modules "${k8s_mod}" | while read -r m; do echo "	${m} => ${m} v${minor}"; done
    echo ")"
  } >"${dir}/go.mod"
  cat >"${dir}/tools.go" <<'GO'
//go:build tools

// Package tools pins the commands this wrapper module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
}

build_k8s() {
  local out="$1" work
  work="$(mktemp -d)"
  log "building kube-apiserver and kubectl v${K8S_VERSION} (wrapper module in ${work})"
  write_k8s_wrapper "${work}"
  (cd "${work}" && go mod tidy >&2)
  local cmd
  for cmd in kube-apiserver kubectl; do
    local start=${SECONDS}
    (cd "${work}" && go build -trimpath -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/client-go/pkg/version.gitVersion=v${K8S_VERSION}" \
        -o "${out}/${cmd}" "k8s.io/kubernetes/cmd/${cmd}" >&2)
    log "built ${cmd} in $((SECONDS - start))s"
  done
  rm -rf "${work}"
}

build_etcd() {
  local out="$1" work start=${SECONDS}
  work="$(mktemp -d)"
  log "building etcd v${ETCD_VERSION}"
  cat >"${work}/go.mod" <<GOMOD
module mclease.local/etcdassets

go 1.26.0

require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
GOMOD
  cat >"${work}/tools.go" <<'GO'
//go:build tools

// Package tools pins the etcd server command this wrapper module builds.
package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "${work}" && go mod tidy >&2 && go build -trimpath -ldflags="-s -w" -o "${out}/etcd" go.etcd.io/etcd/server/v3 >&2)
  rm -rf "${work}"
  log "built etcd in $((SECONDS - start))s"
}

build_all() {
  local dir="$1" tmp
  go_env
  mkdir -p "$(dirname "${dir}")"
  tmp="$(mktemp -d "$(dirname "${dir}")/.building.XXXXXX")"
  chmod 755 "${tmp}"
  trap 'rm -rf "${tmp}"' EXIT
  if [[ -x "${dir}/etcd" ]]; then cp "${dir}/etcd" "${tmp}/etcd"; else build_etcd "${tmp}"; fi
  if [[ -x "${dir}/kube-apiserver" && -x "${dir}/kubectl" ]]; then
    cp "${dir}/kube-apiserver" "${dir}/kubectl" "${tmp}/"
  else
    build_k8s "${tmp}"
  fi
  echo "k8s=${K8S_VERSION} etcd=${ETCD_VERSION}" >"${tmp}/.stamp"
  rm -rf "${dir}"
  mv "${tmp}" "${dir}"
  trap - EXIT
}

ensure() {
  local dir
  dir="$(assets_dir)"
  if is_complete "${dir}"; then return 0; fi
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    die "KUBEBUILDER_ASSETS=${dir} lacks: $(missing_binaries "${dir}" kube-apiserver etcd | tr '\n' ' ')"
  fi
  # One build at a time per cache (a second caller waits, then finds the binaries there).
  mkdir -p "$(dirname "${dir}")"
  exec 9>"$(dirname "${dir}")/.lock"
  flock 9
  if is_complete "${dir}"; then return 0; fi
  local start=${SECONDS}
  build_all "${dir}"
  log "assets ready in ${dir} ($((SECONDS - start))s)"
}

main() {
  case "${1:-}" in
    --print-dir) assets_dir ;;
    --print-etcd) ensure; echo "$(assets_dir)/etcd" ;;
    --check)
      is_complete "$(assets_dir)" || die "no complete kube assets in $(assets_dir); run hack/kube-assets.sh (make kube-assets)"
      assets_dir ;;
    "") ensure; assets_dir ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
}

main "$@"
