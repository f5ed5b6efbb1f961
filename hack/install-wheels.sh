#!/bin/sh
# Install mclease from built wheels the way the image does, then check that the result can run
# the controller: the core with its [controller] extra and every plugin wheel in WHEEL_DIR.
#   hack/install-wheels.sh WHEEL_DIR    PYTHON=... picks the interpreter (default: python3)
# The Dockerfile runs exactly this, and so does tests/deploy (the deployment-as-shipped test).
set -eu
wheels=${1:?usage: hack/install-wheels.sh WHEEL_DIR}
python=${PYTHON:-python3}
core=$(ls "$wheels"/mclease_core-*.whl)
set -- "$core[controller]"
for wheel in "$wheels"/mclease_*.whl; do
  [ "$wheel" = "$core" ] || set -- "$@" "$wheel"
done
"$python" -m pip install --quiet --disable-pip-version-check --find-links "$wheels" "$@"

# Smoke check: the console script starts, every installed plugin loads without a warning, and
# the controller's dependencies import (a missing extra fails here, at build time).
scripts=$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
warnings=$("$scripts/mclease" backends 2>&1 >/dev/null)
if [ -n "$warnings" ]; then
  echo "install-wheels: mclease backends warned: $warnings" >&2
  exit 1
fi
"$scripts/mclease" backends
"$python" -c 'import kubernetes, prometheus_client, mclease_core.controller'
"$scripts/mclease" controller --help >/dev/null
