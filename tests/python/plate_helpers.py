"""HCS plates written by the tests themselves, as iohub writes them for VisCy (imported by name: pytest puts
this folder on sys.path), and a store wrapper that counts chunk reads."""

from __future__ import annotations

import contextlib

import numpy as np
import zarr
from numcodecs import Blosc


def write_iohub_plate(path, volumes: dict, channel_names, voxel_size=(0.5, 0.25, 0.25), chunks=None):
    """An OME-NGFF 0.4 HCS plate in iohub's layout, written with plain zarr (not with spotlight's code).

    ``volumes``: ``{"B/03/0": (C, Z, Y, X) array}``. As iohub writes: zarr v2, the ``plate``, ``well``,
    ``multiscales`` and ``omero`` metadata at the top of ``.zattrs`` with ``version 0.4``, axes named
    ``T, C, Z, Y, X`` with units, one level at path ``0`` of shape ``(1, C, Z, Y, X)``, Blosc zstd with
    bit shuffle, ``/`` chunk keys, and by default one chunk per (t, c) volume.
    """
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    wells = sorted({f.rsplit("/", 1)[0] for f in volumes})
    rows = sorted({w.split("/")[0] for w in wells})
    columns = sorted({w.split("/")[1] for w in wells})
    root.attrs["plate"] = {
        "acquisitions": [{"id": 0}], "columns": [{"name": c} for c in columns], "rows": [{"name": r} for r in rows],
        "version": "0.4", "field_count": max(sum(f.startswith(w + "/") for f in volumes) for w in wells),
        "wells": [{"path": w, "rowIndex": rows.index(w.split("/")[0]), "columnIndex": columns.index(w.split("/")[1])}
                  for w in wells]}
    for well in wells:
        root.require_group(well).attrs["well"] = {
            "images": [{"path": f.rsplit("/", 1)[1]} for f in volumes if f.startswith(well + "/")], "version": "0.4"}
    axes = [{"name": "T", "type": "time", "unit": "second"}, {"name": "C", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "ZYX"]
    for field, volume in volumes.items():
        group = root.require_group(field)
        group.attrs["multiscales"] = [{
            "version": "0.4", "name": field.rsplit("/", 1)[1], "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, 1.0, *map(float, voxel_size)]}]}],
            "coordinateTransformations": [{"type": "identity"}]}]
        group.attrs["omero"] = {
            "id": 0, "name": field.rsplit("/", 1)[1], "version": "0.4",
            "channels": [{"active": True, "coefficient": 1.0, "color": "FFFFFF", "family": "linear", "inverted": False,
                          "label": name, "window": {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0}}
                         for name in channel_names],
            "rdefs": {"defaultT": 0, "defaultZ": 0, "model": "color", "projection": "normal"}}
        data = np.asarray(volume, np.float32)[None]
        array = group.create_array("0", shape=data.shape, chunks=chunks or (1, 1) + data.shape[2:], dtype=np.float32,
                                   compressor=Blosc(cname="zstd", clevel=1, shuffle=Blosc.BITSHUFFLE),
                                   chunk_key_encoding={"name": "v2", "separator": "/"}, fill_value=0.0)
        array[...] = data
    return path


def target_like(seed: int, shape=(16, 32, 32)) -> np.ndarray:
    """Bright boxes on a dim noisy background (a nuclei-like target)."""
    rng = np.random.default_rng(seed)
    volume = 0.1 + 0.02 * rng.standard_normal(shape)
    z, y = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 12)
    volume[z:z + 6, y:y + 12, 4:shape[2] - 4] += 1.0
    volume[2:5, 2:8, 2:8] += 0.6
    return volume.astype(np.float32)


@contextlib.contextmanager
def counting_chunk_reads(monkeypatch):
    """Records the key of every object a local zarr store reads (metadata files and chunks)."""
    from zarr.storage import LocalStore

    keys = []
    real = LocalStore.get

    async def get(self, key, *args, **kwargs):
        keys.append(key)
        return await real(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", get)
    yield keys
    monkeypatch.setattr(LocalStore, "get", real)
