#!/usr/bin/env bash
# End-to-end tests on a kind cluster (needs Docker and kind; neither runs on the project's CI
# machines, which test against envtest-style API servers instead, see tests/kube).
#
# Builds the controller image, creates a kind cluster, loads the image, deploys config/default
# with the image and a cluster name, waits for the controller, runs the e2e tests against the
# cluster and deletes the cluster again, also when a step fails.
#
# Environment:
#   KIND_CLUSTER     cluster name (default mclease-e2e)
#   IMAGE            image to build and deploy (default mclease-controller:e2e)
#   KEEP_CLUSTER=1   leave the cluster running for debugging
#   PYTHON           interpreter with pytest and the project installed (default python3)
#   E2E_PYTEST_ARGS  what pytest runs (default: tests/e2e)
# The tests see the cluster through KUBECONFIG and MCLEASE_E2E_KUBECONFIG (the same file), and
# its name in MCLEASE_E2E_KIND_CLUSTER.
set -euo pipefail

KIND_CLUSTER="${KIND_CLUSTER:-mclease-e2e}"
IMAGE="${IMAGE:-mclease-controller:e2e}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() { echo "e2e-kind: $*" >&2; exit 1; }
log() { echo "e2e-kind: $*" >&2; }

require_tools() {
  command -v docker >/dev/null || die "docker is not installed; make test-e2e-kind needs Docker and kind (use 'make test' for the envtest-style tests)"
  docker info >/dev/null 2>&1 || die "docker is installed but no Docker engine answers ('docker info' failed); start Docker first"
  command -v kind >/dev/null || die "kind is not installed; see https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  command -v kubectl >/dev/null || die "kubectl is not installed"
}

write_overlay() {
  local dir="$1" name="${IMAGE%:*}" tag="${IMAGE##*:}"
  cat >"${dir}/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ${ROOT}/config/default
images:
- name: mclease-controller
  newName: ${name}
  newTag: ${tag}
configMapGenerator:
- name: mclease-controller-config
  namespace: mclease-system
  behavior: merge
  literals:
  - CLUSTER_NAME=${KIND_CLUSTER}
  # One kind cluster, one node: a file on the pod's /tmp is enough here (never in production).
  - STORAGE_URL=sqlite:///tmp/leases.db
YAML
}

cleanup() {
  local rc=$?
  [[ -n "${OVERLAY:-}" ]] && rm -rf "${OVERLAY}"
  [[ -n "${KUBECONFIG_FILE:-}" ]] && rm -f "${KUBECONFIG_FILE}"
  if [[ "${KEEP_CLUSTER:-0}" == 1 ]]; then
    log "leaving cluster ${KIND_CLUSTER} running (KEEP_CLUSTER=1)"
  elif [[ "${CREATED:-0}" == 1 ]]; then
    log "deleting cluster ${KIND_CLUSTER}"
    kind delete cluster --name "${KIND_CLUSTER}" || true
  fi
  exit "${rc}"
}

main() {
  require_tools
  trap cleanup EXIT
  log "building ${IMAGE}"
  docker build -t "${IMAGE}" "${ROOT}"
  log "creating kind cluster ${KIND_CLUSTER}"
  kind create cluster --name "${KIND_CLUSTER}" --wait 120s
  CREATED=1
  local kubeconfig
  kubeconfig="$(mktemp)"
  KUBECONFIG_FILE="${kubeconfig}"
  kind get kubeconfig --name "${KIND_CLUSTER}" >"${kubeconfig}"
  export KUBECONFIG="${kubeconfig}"
  kind load docker-image "${IMAGE}" --name "${KIND_CLUSTER}"
  OVERLAY="$(mktemp -d)"
  write_overlay "${OVERLAY}"
  log "deploying config/default"
  kubectl apply -k "${OVERLAY}"
  kubectl wait --for=condition=Established --timeout=60s \
    crd/multiclusterleases.multicluster.core.cnrm.cloud.google.com
  kubectl -n mclease-system rollout status deployment/mclease-controller --timeout=180s
  log "running e2e tests"
  # shellcheck disable=SC2086  # E2E_PYTEST_ARGS is a list of words on purpose
  (cd "${ROOT}" && MCLEASE_E2E_KIND_CLUSTER="${KIND_CLUSTER}" MCLEASE_E2E_KUBECONFIG="${kubeconfig}" \
    "${PYTHON}" -m pytest ${E2E_PYTEST_ARGS:-tests/e2e})
}

main "$@"
