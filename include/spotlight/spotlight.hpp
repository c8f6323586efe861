// spotlight: the Spotlight loss for 3D virtual staining, header-only.
// Include this for the CPU implementation; spotlight/cuda.cuh adds CUDA.
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/core/error.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/cpu/elementwise.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/loss.hpp"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/partition.hpp"
#include "spotlight/cpu/standardize.hpp"
#include "spotlight/cpu/terms.hpp"
