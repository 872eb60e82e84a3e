#!/usr/bin/env bash
# What the tests need beyond the Rust toolchain and crates: iproute2 (the
# bench's network namespaces) and OpenSSH, client and server (the ssh
# launcher's end-to-end test runs an sshd of its own in a namespace).
# Idempotent and quick: installs only what is missing, and only as root
# with apt-get; elsewhere it says what is missing, and the tests that need
# it say "UNAVAILABLE HERE".
set -euo pipefail

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)

if [ ${#need[@]} -eq 0 ]; then
    echo "ci-setup: iproute2 and openssh are here"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-setup: cannot install ${need[*]} (not root, or no apt-get): the tests that need them say UNAVAILABLE HERE"
    exit 0
fi
echo "ci-setup: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/tmp/ci-setup.log 2>&1; then
    echo "ci-setup: installing ${need[*]} failed (log: /tmp/ci-setup.log): the tests that need them say UNAVAILABLE HERE"
fi
