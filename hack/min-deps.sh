#!/usr/bin/env bash
# Test mclease at the lowest versions its pyproject files allow, installed from built wheels.
#
# The dev venv holds the newest of everything, so a lower bound nobody raised after using a newer
# API passes there and breaks users who have the old version. This script, in a temporary folder
# that it removes afterwards:
#   1. copies the sources (no .venv, no build leftovers) and builds each distribution, the core
#      and plugins/mclease_*, as an sdist and a wheel built from that sdist, with the lowest
#      setuptools the [build-system] tables allow (python -m build --no-isolation);
#   2. checks the distributions (hack/min_deps.py check-dists: LICENSE, version, no tests, nothing
#      from plugins/_template), and that plugins/_template does not install but a copy made as
#      its README says builds a backend;
#   3. installs the wheels (no editable install) into a fresh venv with every third-party
#      requirement pinned at its lower bound (hack/min_deps.py pins), and the test-only tools that
#      no pyproject names at their requirements-dev.txt pins, and the dev harness (devtools/,
#      editable: it is no product);
#   4. deletes the package sources from the copy, so nothing can import them instead of the
#      wheels, and runs the tests that need no slow processes and no Kubernetes binaries:
#      pytest -m "not slow and not kube and not e2e" tests plugins (the plugins' tests start
#      redis-server, etcd and fake-gcs-server: hack/test-servers.sh installs them); then the
#      files of KUBE_TESTS, which use the kubernetes client the way candidates and the
#      controller do, on the test bed's API server (hack/kube-assets.sh builds it).
#
# Usage: hack/min-deps.sh [PYTEST_ARGS...]   PYTEST_ARGS go to both pytest runs.
#   PYTHON=...  the interpreter (default python3, the lowest supported Python on CI)
#   KEEP=1      keep the temporary folder and print where it is
# Takes about 3 minutes on 2 cores with a warm pip cache (`make test-min-deps`; CI runs it once).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
MARKERS="not slow and not kube and not e2e"
# The lock with the standard elector, the lock on its own, the controller's reconciler.
KUBE_TESTS=(tests/kube/test_standard_elector.py tests/kube/test_lock.py tests/kube/test_reconciler.py)
# Imported by the tests but no dependency of any distribution; pinned in requirements-dev.txt.
TEST_ONLY_TOOLS=(PyYAML cryptography greenlet)
PIP_FLAGS=(--quiet --disable-pip-version-check --no-input)

log() { echo "min-deps.sh: $*" >&2; }
die() { log "$*"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mclease-min-deps.XXXXXX")"
if [[ "${KEEP:-}" == 1 ]]; then trap 'log "kept ${WORK}"' EXIT; else trap 'rm -rf "${WORK}"' EXIT; fi
SRC="${WORK}/src"
DIST="${WORK}/dist"

copy_sources() {
  mkdir -p "${SRC}"
  tar -C "${ROOT}" -cf - --exclude=./.git --exclude=./.venv --exclude=./.cache \
    --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.hypothesis --exclude=__pycache__ \
    --exclude='*.egg-info' --exclude=build --exclude=dist --exclude=./bench/results . |
    tar -C "${SRC}" -xf -
}

project_folders() {
  echo "${SRC}"
  local plugin
  for plugin in "${SRC}"/plugins/mclease_*/; do echo "${plugin%/}"; done
}

build_distributions() {
  local pins folder
  "${PYTHON}" -m venv "${WORK}/build-env"
  mapfile -t pins < <("${PYTHON}" "${SRC}/hack/min_deps.py" build-pins)
  log "building with ${pins[*]}"
  "${WORK}/build-env/bin/pip" install "${PIP_FLAGS[@]}" build "${pins[@]}"
  while read -r folder; do
    "${WORK}/build-env/bin/python" -m build --no-isolation --outdir "${DIST}" "${folder}" \
      >"${WORK}/build.log" 2>&1 || { cat "${WORK}/build.log" >&2; die "building ${folder#"${SRC}/"} failed"; }
  done < <(project_folders)
  (cd "${DIST}" && ls)
}

check_template() {
  local template="${SRC}/plugins/_template" copy="${WORK}/mclease_example"
  if "${WORK}/build-env/bin/pip" wheel "${PIP_FLAGS[@]}" --no-build-isolation --no-deps \
    --wheel-dir "${WORK}/template-wheel" "${template}" >/dev/null 2>&1; then
    die "plugins/_template builds; it must not (its pyproject is pyproject.toml.in)"
  fi
  cp -r "${template}" "${copy}"
  mv "${copy}/pyproject.toml.in" "${copy}/pyproject.toml"
  "${WORK}/build-env/bin/pip" wheel "${PIP_FLAGS[@]}" --no-build-isolation --no-deps \
    --wheel-dir "${WORK}/template-wheel" "${copy}" >/dev/null
  unzip -p "${WORK}"/template-wheel/mclease_example-*.whl '*/entry_points.txt' |
    grep -q '^example = mclease_example._plugin$' ||
    die "a copy of plugins/_template made as its README says does not register its scheme"
}

dev_pin() {
  grep -i -m1 "^$1==" "${ROOT}/requirements-dev.txt" || die "requirements-dev.txt pins no $1"
}

install_at_lower_bounds() {
  local pins tools=() plugin_wheels=() tool wheel
  mapfile -t pins < <("${PYTHON}" "${SRC}/hack/min_deps.py" pins)
  for tool in "${TEST_ONLY_TOOLS[@]}"; do tools+=("$(dev_pin "${tool}")"); done
  for wheel in "${DIST}"/mclease_*.whl; do
    [[ "${wheel}" == */mclease_core-* ]] || plugin_wheels+=("${wheel}")
  done
  log "installing the wheels with ${pins[*]}"
  "${PYTHON}" -m venv "${WORK}/test-env"
  "${WORK}/test-env/bin/pip" install "${PIP_FLAGS[@]}" \
    "$(echo "${DIST}"/mclease_core-*.whl)[controller,kube,test]" "${plugin_wheels[@]}" \
    "${pins[@]}" "${tools[@]}"
  # The dev harness (tests import it; never shipped) stays an editable install of the copy: it
  # finds hack/ through its own path.
  "${WORK}/test-env/bin/pip" install "${PIP_FLAGS[@]}" --no-deps -e "${SRC}/devtools"
  "${WORK}/test-env/bin/pip" check >&2
  "${WORK}/test-env/bin/pip" freeze >"${WORK}/installed.txt"
}

remove_package_sources() {
  local folder
  rm -rf "${SRC}/mclease_core"
  while read -r folder; do
    [[ "${folder}" == "${SRC}" ]] || rm -rf "${folder:?}/$(basename "${folder}")"
  done < <(project_folders)
}

check_installed_version() {
  local expected
  expected="$("${PYTHON}" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "${SRC}/pyproject.toml")"
  (cd "${SRC}" && "${WORK}/test-env/bin/python" - "${expected}" "${WORK}/test-env" <<'EOF'
import sys
import mclease_core
expected, env = sys.argv[1:]
assert mclease_core.__file__.startswith(env), f"imported {mclease_core.__file__}, not the wheel"
assert mclease_core.__version__ == expected, f"__version__ {mclease_core.__version__} != {expected}"
EOF
  )
}

main() {
  "${ROOT}/hack/test-servers.sh" --check >/dev/null ||
    die "the plugins' test servers are missing: run hack/test-servers.sh (make test-servers)"
  "${ROOT}/hack/kube-assets.sh" --check >/dev/null ||
    die "the Kubernetes test binaries are missing: run hack/kube-assets.sh (make kube-assets)"
  copy_sources
  build_distributions
  "${PYTHON}" "${SRC}/hack/min_deps.py" check-dists "${DIST}" || die "the distributions break the packaging rules"
  check_template
  install_at_lower_bounds
  remove_package_sources
  check_installed_version
  # mclease_core.testing finds the checkout's fake-gcs-server through hack/, which no wheel has.
  MCLEASE_FAKE_GCS_SERVER="${MCLEASE_FAKE_GCS_SERVER:-$("${ROOT}/hack/fake-gcs-server.sh" --path)}"
  export MCLEASE_FAKE_GCS_SERVER
  cd "${SRC}"
  log "testing: pytest -m '${MARKERS}' tests plugins $*"
  "${WORK}/test-env/bin/python" -m pytest -m "${MARKERS}" -q tests plugins "$@"
  log "testing: pytest ${KUBE_TESTS[*]} $*"
  "${WORK}/test-env/bin/python" -m pytest -q "${KUBE_TESTS[@]}" "$@"
}

main "$@"
