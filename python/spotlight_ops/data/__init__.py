"""Data pipeline: CSV manifests of TIFF pairs, preprocessing, patch sampling, synthetic scenes.

* :func:`read_manifest` / :func:`write_manifest`: ``path_signal,path_target[,path_mask]`` CSVs, one column
  per channel (``path_signal_2``, ...), channels of OME-Zarr images by name (``channel_signal``);
* :func:`read_volume` / :func:`write_volume`: validated TIFF/OME-TIFF/OME-Zarr I/O;
* :class:`Source` / :func:`parse_source`: one channel of one image (``plate.zarr/B/03/0#Nuclei``);
* :mod:`.plates`: HCS OME-Zarr plates (:func:`open_plate`, :func:`create_plate_like`, :func:`append_channels`,
  :func:`write_channels`);
* :func:`load_pairs`: preprocessed :class:`VolumePair` s (signal z-scored, target Otsu-standardized, per channel);
* :func:`open_volume`: a volume read lazily (memory-mapped TIFF, chunked OME-Zarr);
* :class:`PatchSampler`: foreground-aware random patches (optionally flipped/rotated, :mod:`.augment`)
  with a resumable state;
* :class:`VolumeBuffer` / :class:`StatsCache`: a bounded buffer of volumes for data larger than memory;
* :mod:`.masks`: Otsu thresholds and foreground masks stored with the data (``spotlight preprocess``);
* :func:`output_names`: distinct output names for a command's inputs (:mod:`.outputs`);
* :mod:`spotlight_ops.data.synthetic`: seeded synthetic nuclei scenes for tests and the demo.
"""

from .dataset import PreprocessConfig, VolumePair, load_pair, load_pairs, prepare_signal
from .errors import DataError
from .io import VolumeMetadata, read_metadata, read_volume, write_volume
from .manifest import ManifestRow, read_manifest, write_manifest
from .sampler import PatchSampler
from .io import LazyVolume, open_volume
from .dataset import load_pair_with_stats, volume_stats
from .buffer import StatsCache, VolumeBuffer
from .sources import Source, parse_source
from .plates import Plate, append_channels, create_plate_like, open_plate, write_channels
from .outputs import Output, OutputCollision, output_names

__all__ = [
    "DataError", "LazyVolume", "ManifestRow", "PatchSampler", "StatsCache", "VolumeBuffer", "load_pair_with_stats",
    "open_volume", "volume_stats", "PreprocessConfig", "VolumeMetadata", "VolumePair",
    "load_pair", "load_pairs", "prepare_signal", "read_manifest", "read_metadata", "read_volume",
    "write_manifest", "write_volume", "Source", "parse_source", "Plate", "append_channels", "create_plate_like",
    "open_plate", "write_channels", "Output", "OutputCollision", "output_names",
]
