# MEDDIFF_CUDA = AUTO | ON | OFF. AUTO turns CUDA on when nvcc is found and LibTorch was built with CUDA.
set(MEDDIFF_HAVE_CUDA OFF)
set(_torch_has_cuda OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES OR CAFFE2_USE_CUDA)
  set(_torch_has_cuda ON)
endif()
if(NOT MEDDIFF_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER AND _torch_has_cuda)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
      # A100 (80), A10/A40/RTX 30xx (86), L4/L40/RTX 40xx (89), H100/H200 (90) as machine code, plus
      # compute_90 PTX that newer GPUs compile at load time. On any other GPU the kernels are skipped
      # at run time (one warning) and LibTorch's operations run instead.
      set(CMAKE_CUDA_ARCHITECTURES "80-real;86-real;89-real;90")
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(MEDDIFF_HAVE_CUDA ON)
  elseif(MEDDIFF_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MEDDIFF_CUDA=ON but nvcc (${CMAKE_CUDA_COMPILER}) or a CUDA LibTorch (${_torch_has_cuda}) is missing")
  endif()
endif()
message(STATUS "meddiff: CUDA kernels ${MEDDIFF_HAVE_CUDA}")
