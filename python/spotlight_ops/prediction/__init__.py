"""Streamed prediction behind :mod:`spotlight_ops.predict` and ``spotlight predict``.

* :mod:`.tiles`: tiling and exact blending, planes handed out as they are finished;
* :mod:`.reading`: the signal read lazily, standardized per box with streamed statistics;
* :mod:`.writing`: TIFF files and OME-Zarr channels filled slab by slab;
* :mod:`.volumes`: one input's prediction from sources to a destination;
* :mod:`.cli`: the command (inputs, output names, plates, channels).
"""
