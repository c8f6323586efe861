// Loads a TorchScript module that calls torch.ops.spotlight.loss and runs it
// from C++, with no Python: linking libspotlight_ops registers the ops and
// their C++ autograd. Prints the loss and the gradient's sum, one per line.
//   spotlight_torchscript_runner MODULE.pt INPUTS.pt
// INPUTS.pt is a scripted module holding `pred` and `target` attributes.
#include <torch/script.h>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " MODULE.pt INPUTS.pt\n";
    return 2;
  }
  try {
    torch::jit::Module module = torch::jit::load(argv[1]);
    torch::jit::Module inputs = torch::jit::load(argv[2]);
    at::Tensor pred = inputs.attr("pred").toTensor().clone().requires_grad_(true);
    at::Tensor target = inputs.attr("target").toTensor();
    at::Tensor loss = module.forward({pred, target}).toTensor();
    loss.backward();
    std::printf("%.17g\n%.17g\n", loss.item<double>(), pred.grad().sum().item<double>());
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
