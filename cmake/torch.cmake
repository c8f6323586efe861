# Imported targets for the parts of libtorch the op library links, read
# from the installed torch Python package. (TorchConfig.cmake is not used: for
# CUDA builds it wants a complete toolkit, nvrtc included, and rewrites the
# CUDA architecture flags.)
#   spotlight_torch::cpu   c10 + torch_cpu + torch, headers, ABI define
#   spotlight_torch::cuda  c10_cuda + torch_cuda (when torch has CUDA)
find_package(Python3 REQUIRED COMPONENTS Interpreter)
execute_process(
  COMMAND ${Python3_EXECUTABLE} -c
          "import torch, torch.utils.cpp_extension as e; print(';'.join([torch.__version__, str(int(torch._C._GLIBCXX_USE_CXX11_ABI)), str(torch.version.cuda or ''), e.include_paths()[0], e.include_paths()[1], e.library_paths()[0]]))"
  OUTPUT_VARIABLE _torch_info OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _torch_rc)
if(NOT _torch_rc EQUAL 0)
  message(FATAL_ERROR "spotlight: SPOTLIGHT_BUILD_OPS needs torch importable by ${Python3_EXECUTABLE}")
endif()
list(GET _torch_info 0 SPOTLIGHT_TORCH_VERSION)
list(GET _torch_info 1 _torch_abi)
list(GET _torch_info 2 SPOTLIGHT_TORCH_CUDA)
list(GET _torch_info 3 _torch_inc)
list(GET _torch_info 4 _torch_api_inc)
list(GET _torch_info 5 SPOTLIGHT_TORCH_LIBDIR)
message(STATUS "spotlight: torch ${SPOTLIGHT_TORCH_VERSION} (CUDA '${SPOTLIGHT_TORCH_CUDA}') at ${SPOTLIGHT_TORCH_LIBDIR}")

add_library(spotlight_torch_cpu INTERFACE)
add_library(spotlight_torch::cpu ALIAS spotlight_torch_cpu)
target_include_directories(spotlight_torch_cpu SYSTEM INTERFACE ${_torch_inc} ${_torch_api_inc})
target_compile_definitions(spotlight_torch_cpu INTERFACE _GLIBCXX_USE_CXX11_ABI=${_torch_abi})
foreach(_lib c10 torch_cpu torch)
  find_library(SPOTLIGHT_TORCH_${_lib} ${_lib} PATHS ${SPOTLIGHT_TORCH_LIBDIR} NO_DEFAULT_PATH REQUIRED)
  target_link_libraries(spotlight_torch_cpu INTERFACE ${SPOTLIGHT_TORCH_${_lib}})
endforeach()

if(SPOTLIGHT_WITH_CUDA AND SPOTLIGHT_TORCH_CUDA)
  add_library(spotlight_torch_cuda INTERFACE)
  add_library(spotlight_torch::cuda ALIAS spotlight_torch_cuda)
  foreach(_lib c10_cuda torch_cuda)
    find_library(SPOTLIGHT_TORCH_${_lib} ${_lib} PATHS ${SPOTLIGHT_TORCH_LIBDIR} NO_DEFAULT_PATH REQUIRED)
    target_link_libraries(spotlight_torch_cuda INTERFACE ${SPOTLIGHT_TORCH_${_lib}})
  endforeach()
  target_compile_definitions(spotlight_torch_cuda INTERFACE USE_CUDA)
  target_link_libraries(spotlight_torch_cuda INTERFACE spotlight_torch::cpu CUDA::cudart)
  set(SPOTLIGHT_OPS_CUDA ON)
else()
  set(SPOTLIGHT_OPS_CUDA OFF)
endif()
