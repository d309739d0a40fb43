#!/usr/bin/env bash
# Installs the services the tests and benches run for real: Debian's redis-server (the
# shared cache tier), nginx (the round-robin load balancer in front of several bridges) and
# prometheus (with promtool: the observability tests scrape a bridge with it and check the
# shipped rule files). With no arguments those three are installed; otherwise only the named
# packages (`redis-server`, `nginx`, `prometheus`, `systemd`). `systemd` is installed only when
# named: the deployment test needs its `systemd-analyze` to verify the shipped unit file.
# Idempotent: a package whose binary is present is skipped, and with nothing missing the script
# returns at once. Needs root (CI and the test machines run as root); uses apt-get only.
#
# The tests start their own redis-server, nginx and prometheus on free loopback ports with
# configs of their own, so the distro's services are never used: the package's post-install
# may start redis on 6379, nginx on 80 and prometheus on 9090, and the script stops them
# again and keeps them from starting at boot. `systemd` is not a service to stop (on a host
# booted with it, stopping or disabling it would be wrong), so that step skips it.
set -euo pipefail

# The binary each package provides, by package name.
binary_of() {
  case "$1" in
    redis-server) echo /usr/bin/redis-server ;;
    nginx) echo /usr/sbin/nginx ;;
    prometheus) echo /usr/bin/prometheus ;;
    systemd) echo /usr/bin/systemd-analyze ;;
    *)
      echo "install-services.sh: unknown package '$1' (expected redis-server, nginx, prometheus or systemd)" >&2
      exit 2
      ;;
  esac
}

packages=("$@")
if [[ ${#packages[@]} -eq 0 ]]; then
  packages=(redis-server nginx prometheus)
fi

missing() {
  local package
  for package in "${packages[@]}"; do
    if [[ ! -x "$(binary_of "$package")" ]]; then
      echo "$package"
    fi
  done
}

# Validate the names (binary_of exits on an unknown one) before taking the lock.
for package in "${packages[@]}"; do
  binary_of "$package" >/dev/null
done

if [[ -z "$(missing)" ]]; then
  exit 0
fi

# Several test threads (or a test and CI) may call this at once; apt holds its own lock but
# fails instead of waiting, so serialise the callers here and let a later one find the
# packages installed.
lock_dir="${TMPDIR:-/tmp}"
exec 9>"$lock_dir/mcp-bridge-install-services.lock"
flock 9

mapfile -t to_install < <(missing)
if [[ ${#to_install[@]} -eq 0 ]]; then
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  echo "install-services.sh: ${to_install[*]} missing and installing needs root" >&2
  exit 1
fi

echo "installing ${to_install[*]} (Debian packages) for the replica, observability and deployment tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${to_install[@]}" >&2

# Stop whatever the packages' post-install started and keep it from starting at boot: the
# tests never use the default ports, and a redis on 6379, an nginx on 80 or a prometheus
# on 9090 left running would only hold ports and memory. On a machine without an init system (a container) the
# post-install starts nothing and these calls fail harmlessly.
for package in "${to_install[@]}"; do
  # systemd is the init system itself (or, in a container, a set of tools), never a service
  # the tests would collide with.
  if [[ "$package" == systemd ]]; then
    continue
  fi
  service "$package" stop >/dev/null 2>&1 || true
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now "$package" >/dev/null 2>&1 || true
  fi
done

for package in "${to_install[@]}"; do
  binary="$(binary_of "$package")"
  if [[ ! -x "$binary" ]]; then
    echo "install-services.sh: apt-get finished but $binary is still missing" >&2
    exit 1
  fi
done
