"""Training F-net with the MSE or Spotlight loss: config, crash-safe checkpoints, DDP.

``train(TrainConfig(...), resume=...)`` runs or continues a run; ``spotlight train`` is its CLI.
"""

from ..files.checkpoint import CheckpointError, CheckpointManager, load_checkpoint, save_atomic
from .config import TrainConfig, build_config
from ..files.runfiles import RunLockedError
from .trainer import Stopped, TrainResult, make_criterion, train

__all__ = ["CheckpointError", "CheckpointManager", "RunLockedError", "Stopped", "TrainConfig", "TrainResult",
           "build_config", "load_checkpoint", "make_criterion", "save_atomic", "train"]
