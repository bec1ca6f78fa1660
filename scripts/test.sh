#!/usr/bin/env bash
# Set up (scripts/setup.sh), build, and run every test that needs no GPU.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
source "$root/scripts/env.sh"
cd "${MEDDIFF_BUILD_DIR:-$root/build}"
ctest -LE gpu --output-on-failure -j "${MEDDIFF_TEST_JOBS:-2}" "$@"
