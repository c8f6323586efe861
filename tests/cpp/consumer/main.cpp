// A downstream program using the installed headers: the loss of a tiny
// batch, checked against its closed form.
#include <spotlight/spotlight.hpp>

#include <cmath>
#include <cstdio>

int main() {
  // Target: half foreground (3), half background (0). The prediction is exact
  // on the foreground and at least 1 below the threshold on the background.
  const float target[4] = {0.0f, 3.0f, 0.0f, 3.0f};
  const float pred[4] = {-1.0f, 3.0f, -1.0f, 3.0f};
  spotlight::LossOptions opt;  // the defaults (spotlight::defaults), Otsu threshold
  float loss = -1.0f;
  const auto state = spotlight::cpu::loss_forward(pred, target, 1, 4, static_cast<const float*>(nullptr), opt, &loss);
  // Otsu puts T at the centre of bin 0, 3 * 0.5 / 256; MMSE = 0; the soft
  // mask is 1 on the foreground and 0 on the background:
  // Dice = 1 - 2 * 2 / (2 + 2 + eps), and the loss (1 - lam) * Dice.
  const double expected = (1.0 - opt.lam) * (1.0 - 4.0 / (4.0 + opt.eps));
  std::printf("threshold %g loss %.9g expected %.9g\n", state.thresholds[0], loss, expected);
  return std::abs(loss - expected) < 1e-6 ? 0 : 1;
}
