# Shared helpers of Vessel's scripts. Source it; do not run it.
set -euo pipefail

VESSEL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VESSEL_CACHE=${VESSEL_CACHE:-$VESSEL_ROOT/.cache}
export PATH=/usr/local/go/bin:$PATH

log() { printf '==> %s\n' "$*" >&2; }

# ensure_packages installs the Debian packages that are missing, once.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_go checks that a Go toolchain new enough for go.mod is on PATH.
ensure_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "Go is required (the version go.mod names, at /usr/local/go or on PATH)" >&2
    exit 1
  fi
}

# build_vessel builds bin/vessel and, next to it, the static micro-VM guest
# agent bin/vessel-guest.
build_vessel() {
  ensure_go
  log "building bin/vessel and bin/vessel-guest"
  (cd "$VESSEL_ROOT" && go build -o bin/vessel ./cmd/vessel &&
    CGO_ENABLED=0 go build -o bin/vessel-guest ./cmd/vessel-guest)
}
