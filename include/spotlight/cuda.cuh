// spotlight on CUDA: header-only device kernels (no torch) for every op,
// in CUB's style: each device-level function takes a cudaStream_t and a
// caller-owned workspace sized by its *_workspace_bytes query, returns a
// cudaError_t, and never synchronizes. See docs/cuda.md.
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/cuda/block.cuh"
#include "spotlight/cuda/config.cuh"
#include "spotlight/cuda/elementwise.cuh"
#include "spotlight/cuda/loss.cuh"
#include "spotlight/cuda/numeric.cuh"
#include "spotlight/cuda/otsu.cuh"
#include "spotlight/cuda/policy.cuh"
#include "spotlight/cuda/standardize.cuh"
#include "spotlight/cuda/sums.cuh"
#include "spotlight/cuda/terms.cuh"
#include "spotlight/cuda/warp.cuh"
#include "spotlight/cuda/workspace.cuh"
