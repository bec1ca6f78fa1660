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
# The architectures meddiff's kernels target (see MeddiffCuda.cmake), not every one LibTorch was built for.
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "8.0;8.6;8.9;9.0+PTX")
endif()
find_package(Torch REQUIRED)
message(STATUS "meddiff: LibTorch ${Torch_VERSION} from ${Torch_DIR}")
# TORCH_CXX_FLAGS carries the ABI define; the imported targets already carry it, keep the flags clean.
