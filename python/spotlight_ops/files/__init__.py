"""Crash-safe files shared by training, prediction and the data cache: atomic writes, run locks and
fault points (:mod:`.runfiles`), the checked checkpoint container (:mod:`.checkpoint`). No training
code: ``spotlight predict`` reads model files through it without importing the trainer."""
