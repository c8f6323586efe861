"""Drop-in replacements for other projects' Spotlight losses, over the fused op.

* :mod:`.viscy`: ``SpotlightLoss`` of mehta-lab/VisCy (``viscy_utils.losses.spotlight``): the same
  constructor, validation and ``forward(pred, target, fg_mask=None)``, so a VisCy YAML recipe switches
  by changing one ``class_path`` to ``spotlight_ops.compat.viscy.SpotlightLoss``.
"""
