#!/usr/bin/env bash
# Install the named Debian packages that are missing (apt-get update once, only if needed).
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Another apt/dpkg run (unattended-upgrades, a second make) may hold apt's locks: wait for them,
# up to 10 minutes, instead of failing at once. DPkg::Lock::Timeout makes install wait for
# dpkg's lock; apt-get update has no timeout for its lists lock, so it is tried again.
update() {
  local waited=0 out
  until out=$($SUDO apt-get update -q 2>&1); do
    if ! grep -q "Could not get lock" <<<"$out" || [ "$waited" -ge 600 ]; then
      echo "$out" >&2
      return 1
    fi
    [ "$waited" -eq 0 ] && echo "waiting for apt's lock: $(grep -m1 "Could not get lock" <<<"$out")"
    sleep 5
    waited=$((waited + 5))
  done
  echo "$out"
}
update
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
