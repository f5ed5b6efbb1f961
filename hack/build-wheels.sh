#!/bin/sh
# Build the wheels that ship: the core and every plugin distribution in plugins/mclease_*/ (not
# plugins/_template, which is a starting point for third parties, not a backend).
#   hack/build-wheels.sh OUT_DIR        PYTHON=... picks the interpreter (default: python3)
# The Dockerfile runs exactly this, and so does tests/deploy (the deployment-as-shipped test).
set -eu
out=${1:?usage: hack/build-wheels.sh OUT_DIR}
python=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$out" "$root"
for plugin in "$root"/plugins/mclease_*/; do
  "$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$out" "$plugin"
done
ls "$out"
