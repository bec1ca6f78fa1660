# ccache for C++ and CUDA when present. scripts/env.sh points CCACHE_BASEDIR at the clone so that a
# fresh clone in another folder reuses the cache, and sets the sloppiness that precompiled headers need.
if(MEDDIFF_USE_CCACHE)
  find_program(MEDDIFF_CCACHE ccache)
  if(MEDDIFF_CCACHE)
    set(CMAKE_CXX_COMPILER_LAUNCHER ${MEDDIFF_CCACHE})
    set(CMAKE_C_COMPILER_LAUNCHER ${MEDDIFF_CCACHE})
    set(CMAKE_CUDA_COMPILER_LAUNCHER ${MEDDIFF_CCACHE})
    message(STATUS "meddiff: ccache ${MEDDIFF_CCACHE}")
  endif()
endif()
