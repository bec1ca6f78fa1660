#!/usr/bin/env bash
# Prepares ./.gpu-deps for a GPU machine that has PyTorch and nvcc but no Debian -dev packages and no
# network: the headers and CMake configs of fmt, nlohmann-json, doctest and gloo (the headers c10d's Gloo
# process group includes), downloaded from Debian's
# archive (apt-get download) and unpacked (dpkg -x). Ignored by git; travels with the working tree to
# the GPU machine (the device tool's `carry`), where scripts/gpu-check.sh uses it. fmt is used
# header-only there, so no library of these packages has to run on that machine.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/.gpu-deps
if [[ -f $dest/.complete ]]; then echo "gpu-deps: present in $dest"; exit 0; fi
rm -rf "$dest"; mkdir -p "$dest"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && apt-get download -q libfmt-dev libfmt9 nlohmann-json3-dev doctest-dev libgloo-dev )
for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dest"; done
rm -rf "$dest/usr/share/doc" "$dest/usr/share/man"
touch "$dest/.complete"
echo "gpu-deps: $(du -sh "$dest" | cut -f1) in $dest"
