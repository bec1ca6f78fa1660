#!/usr/bin/env bash
# Installs everything meddiff needs on a fresh Debian 12 machine. Idempotent: a second run checks
# and returns in seconds.
#   - Debian packages (ITK, GDCM, cxxopts, nlohmann-json, fmt, doctest, ccache, dicom3tools, ...)
#   - LibTorch from the PyPI torch wheel, in a virtual environment shared by every clone of this
#     repository on the machine (keyed by torch and Python version), linked as ./.venv
# Environment:
#   MEDDIFF_ENV_HOME  where shared environments live (default: ~/.cache/meddiff)
#   MEDDIFF_SKIP_APT=1  do not touch Debian packages (e.g. when they are installed by an admin)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/env.sh"

apt_pkgs=(build-essential cmake ninja-build ccache git pkg-config python3-venv
  libinsighttoolkit5-dev libgdcm-dev libcxxopts-dev nlohmann-json3-dev libfmt-dev doctest-dev libgloo-dev
  dicom3tools libgdcm-tools)

missing=()
if [[ "${MEDDIFF_SKIP_APT:-0}" != 1 ]]; then
  for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: Debian packages present"
fi

# Python interpreter for the environment: the one on PATH (the torch wheel needs 3.10-3.14).
py=${MEDDIFF_PYTHON:-python3}
if [[ -x "$MEDDIFF_VENV/bin/python" ]] && "$MEDDIFF_VENV/bin/python" -c \
    "import torch,sys; sys.exit(0 if torch.__version__.startswith('$MEDDIFF_TORCH_VERSION') else 1)" 2>/dev/null \
    && [[ -f "$MEDDIFF_VENV/.meddiff-complete" ]]; then
  echo "setup: LibTorch $MEDDIFF_TORCH_VERSION present in $MEDDIFF_VENV"
else
  echo "setup: creating $MEDDIFF_VENV with torch==$MEDDIFF_TORCH_VERSION (first time: ~4 GB download, cached by pip)"
  mkdir -p "$(dirname "$MEDDIFF_VENV")"
  rm -rf "$MEDDIFF_VENV"
  "$py" -m venv "$MEDDIFF_VENV"
  "$MEDDIFF_VENV/bin/python" -m pip install -q --upgrade pip
  # numpy, nibabel and pydicom: only for scripts/make_fixtures.py and cross-checks in tests.
  "$MEDDIFF_VENV/bin/python" -m pip install -q "torch==$MEDDIFF_TORCH_VERSION" numpy nibabel pydicom
  touch "$MEDDIFF_VENV/.meddiff-complete"
fi
ln -sfn "$MEDDIFF_VENV" "$root/.venv"
# cuobjdump (not in Debian's CUDA toolkit packages): a test checks the architectures the kernels
# were compiled for. Only where nvcc is installed.
if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  if ! compgen -G "$MEDDIFF_VENV/lib/python3*/site-packages/nvidia/cu13/bin/cuobjdump" >/dev/null; then
    echo "setup: installing cuobjdump (nvidia-cuda-cuobjdump) into $MEDDIFF_VENV"
    "$MEDDIFF_VENV/bin/python" -m pip install -q --no-deps "nvidia-cuda-cuobjdump==13.2.78"
  fi
fi
echo "setup: done (LibTorch CMake prefix: $("$MEDDIFF_VENV/bin/python" -c 'import torch;print(torch.utils.cmake_prefix_path)'))"
