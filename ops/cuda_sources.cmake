# The CUDA kernels of the op library, included by ops/CMakeLists.txt when
# SPOTLIGHT_OPS_CUDA is ON. Two halves, kept apart on purpose:
#   - ops/cuda/*.cu: torch-free launchers instantiating include/spotlight/cuda,
#     compiled by nvcc in an object library of their own (no torch headers,
#     and none of spotlight_ops' C++-only flags reach nvcc);
#   - ops/*/*_cuda.cpp: the torch glue (checks, stream, workspace), compiled
#     by the C++ compiler into spotlight_ops.
add_library(spotlight_ops_cuda_kernels OBJECT
            cuda/loss_kernels.cu cuda/otsu_kernels.cu cuda/sigmoid_kernels.cu cuda/terms_kernels.cu)
target_include_directories(spotlight_ops_cuda_kernels PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(spotlight_ops_cuda_kernels PRIVATE spotlight::spotlight CUDA::cudart)
set_target_properties(spotlight_ops_cuda_kernels PROPERTIES
                      POSITION_INDEPENDENT_CODE ON
                      CUDA_ARCHITECTURES "${SPOTLIGHT_CUDA_ARCHITECTURES}")
# No --use_fast_math: IEEE division and no flush-to-zero keep the Otsu
# thresholds equal to the CPU's to the bit.
target_compile_options(spotlight_ops_cuda_kernels PRIVATE
                       $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo -O3 -Xcompiler=-Wall>)

target_sources(spotlight_ops PRIVATE
               loss/loss_cuda.cpp otsu/otsu_cuda.cpp sigmoid/sigmoid_cuda.cpp terms/terms_cuda.cpp
               $<TARGET_OBJECTS:spotlight_ops_cuda_kernels>)
target_link_libraries(spotlight_ops PRIVATE spotlight_torch::cuda)
