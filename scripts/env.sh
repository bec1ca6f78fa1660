# Sourced by the scripts: the shared locations and versions, in one place.
MEDDIFF_TORCH_VERSION=2.11.0
MEDDIFF_ENV_HOME=${MEDDIFF_ENV_HOME:-$HOME/.cache/meddiff}
_pyver=$(${MEDDIFF_PYTHON:-python3} -c 'import sys;print(f"{sys.version_info[0]}{sys.version_info[1]}")')
MEDDIFF_VENV=${MEDDIFF_VENV:-$MEDDIFF_ENV_HOME/venv-torch-$MEDDIFF_TORCH_VERSION-cp$_pyver}
# ccache shared by every clone: paths relative to the clone so a fresh clone hits the cache.
export CCACHE_DIR=${CCACHE_DIR:-$MEDDIFF_ENV_HOME/ccache}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-10G}
