# Decides whether the CUDA kernels are built, and sets the CUDA language up.
# SPOTLIGHT_WITH_CUDA is the outcome.
set(SPOTLIGHT_WITH_CUDA OFF)
if(NOT SPOTLIGHT_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES ${SPOTLIGHT_CUDA_ARCHITECTURES})
    # CMake 3.25 does not know nvcc's C++20 flag: pass it by hand.
    string(APPEND CMAKE_CUDA_FLAGS " -std=c++20")
    # Shared: the kernels must use the same CUDA runtime as torch.
    set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    enable_language(CUDA)
    # Nor does it know the CUDA20 dialect: without this, a CUDA target linking spotlight::spotlight
    # (which requires cxx_std_20) fails to generate. The flag is in CMAKE_CUDA_FLAGS.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "")
    endif()
    find_package(CUDAToolkit REQUIRED)
    set(SPOTLIGHT_WITH_CUDA ON)
  elseif(SPOTLIGHT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SPOTLIGHT_CUDA=ON but no CUDA compiler was found")
  endif()
endif()
message(STATUS "spotlight: CUDA language ${SPOTLIGHT_WITH_CUDA}")
