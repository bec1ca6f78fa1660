# LibTorch: by default the one in ./.venv (made by scripts/setup.sh from the PyPI torch wheel).
# Bring your own with -DTorch_DIR=/path/to/libtorch/share/cmake/Torch or -DCMAKE_PREFIX_PATH=/path/to/libtorch.
if(NOT Torch_DIR)
  set(_venv_py ${CMAKE_CURRENT_SOURCE_DIR}/.venv/bin/python)
  if(EXISTS ${_venv_py})
    execute_process(COMMAND ${_venv_py} -c "import torch;print(torch.utils.cmake_prefix_path)"
                    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
    if(_rc EQUAL 0)
      list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
    endif()
  endif()
endif()
# The CUDA build of LibTorch looks for the CUDA toolkit; nvcc from PATH or /usr/local/cuda.
if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CUDAToolkit_ROOT /usr/local/cuda CACHE PATH "")
endif()
# The GPU architectures meddiff's kernels are compiled for. Default: A100 (sm_80; its machine code
# also runs on A10/A40/L4/L40/RTX 30xx and 40xx, compute capability 8.x) and H100/H200 (sm_90), plus
# compute_90 PTX that newer GPUs compile at load time. LibTorch's CMake adds -gencode flags of its
# own from TORCH_CUDA_ARCH_LIST: it is set to the same list ("80-real" -> 8.0, "90" -> 9.0+PTX).
set(MEDDIFF_CUDA_ARCHITECTURES "80-real;90" CACHE STRING "CUDA architectures of the kernels (CMAKE_CUDA_ARCHITECTURES syntax)")
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "")
  foreach(_arch ${MEDDIFF_CUDA_ARCHITECTURES})
    string(REGEX MATCH "^([0-9]+)([0-9])(-real|-virtual)?$" _m "${_arch}")
    if(NOT _m)
      message(FATAL_ERROR "MEDDIFF_CUDA_ARCHITECTURES: cannot read '${_arch}' (expected e.g. 80-real or 90)")
    endif()
    set(_v "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
    if(NOT CMAKE_MATCH_3)
      set(_v "${_v}+PTX")
    endif()
    list(APPEND TORCH_CUDA_ARCH_LIST "${_v}")
  endforeach()
endif()
find_package(Torch REQUIRED)
message(STATUS "meddiff: LibTorch ${Torch_VERSION} from ${Torch_DIR}")
# TORCH_CXX_FLAGS carries the ABI define; the imported targets already carry it, keep the flags clean.
