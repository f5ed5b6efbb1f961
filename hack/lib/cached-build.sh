# Shared by the hack/ scripts that build one binary into a cache folder (go-candidate.sh,
# helm.sh): logging, the build lock and the command line. Source it after setting PARENT (the
# cache's parent folder, where the lock lives) and BIN (the binary), and define build().
#   main "$@"   --print-path | --check | (nothing: build if needed) | --help
# Progress goes to stderr; the binary's path is the only thing on stdout.

log() { echo "$(basename "$0"): $*" >&2; }
die() { log "error: $*"; exit 1; }

is_built() { [[ -x "${BIN}" ]]; }

# One build at a time (parallel make targets, test sessions, two checkouts sharing the cache).
locked_build() {
  mkdir -p "${PARENT}"
  exec 9>"${PARENT}/.lock"
  command -v flock >/dev/null && flock 9
  is_built || build
}

main() {
  case "${1:-}" in
    --print-path) echo "${BIN}" ;;
    --check) is_built || die "no $(basename "${BIN}") at ${BIN}; run hack/$(basename "$0") (make $(basename "$0" .sh))"; echo "${BIN}" ;;
    "") is_built || locked_build; echo "${BIN}" ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
}
