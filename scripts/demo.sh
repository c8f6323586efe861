#!/usr/bin/env bash
# The main job: sets up a fresh machine (scripts/setup.sh), then runs
# `spotlight demo`: builds the synthetic dataset, trains an MSE and a
# Spotlight F-net, predicts the held-out volumes, evaluates, and writes a report.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${SPOTLIGHT_VENV:-$PWD/.venv}
bash scripts/setup.sh
"$venv/bin/spotlight" demo --out "${SPOTLIGHT_DEMO_OUT:-demo_out}" "$@"
