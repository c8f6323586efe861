// The reference bin centres of test_bin_centre.cpp, compiled with
// -ffp-contract=off and no -march (so no FMA instruction exists to fuse into):
// lo + (i + 0.5) * width with the product rounded, as SPEC 1 and the CUDA
// kernel (__dmul_rn, __dadd_rn) compute it.
double unfused_bin_centre(double lo, double hi, int bins, int i) {
  const double width = (hi - lo) / bins;
  const double offset = (i + 0.5) * width;
  return lo + offset;
}
