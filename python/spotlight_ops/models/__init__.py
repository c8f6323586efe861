"""Virtual-staining networks: :class:`FNet`, the 3D U-Net of Ounkomol et al. (2018)."""

from .fnet import FNet

__all__ = ["FNet"]
