"""What a run's data decide about the model and the loss: the pairs' rows (a manifest or a plate), their
channel counts (the F-net's ``in_channels`` and ``out_channels``), their channel names (recorded in every
model file) and whether their stored foreground masks become the Spotlight loss's ``mask=``.

Several target channels: the data pipeline Otsu-standardizes each channel with its own threshold
(``(x_c - T_c) / std(x_c)``), so ``T = 0`` is every channel's own foreground ``x_c > T_c`` and the loss
needs no per-channel threshold. Its pools stay the preset's (``per_channel`` false for ``"trained"``
and ``"spotlight"``: one pool per batch over every channel; ``--per-channel`` pools each (sample,
channel) on its own). Z-scored targets have no common T: the loss then chooses each pool's Otsu
threshold itself, which must be per (sample, channel), so several z-scored target channels need
``per_channel`` (an error says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..data import ManifestRow, read_manifest
from ..data.dataset import mask_sources
from ..data.errors import DataError
from ..data.manifest import plate_rows

CHANNELS_KEY = "channels"  # model-file metadata: {"signal": [name or None, ...], "target": [...]}


@dataclass(frozen=True)
class DataPlan:
    """What the pairs decide: the F-net's channel counts, the channel names, whether the loss gets masks."""

    in_channels: int
    out_channels: int
    names: dict
    use_masks: bool
    mask_note: str

    def describe(self) -> str:
        """The start line's words on the data: channels and masks."""
        def names(role: str) -> str:
            given = self.names[role]
            return ", ".join(n or "?" for n in given) if any(given) else str(len(given))

        return f"channels: signal {names('signal')} -> target {names('target')}; {self.mask_note}"


def plan(config, rows: Sequence[ManifestRow], val_rows: Sequence[ManifestRow]) -> DataPlan:
    """The :class:`DataPlan` of a run's training and held-out pairs; every error before any training."""
    in_channels, out_channels = channel_counts(list(rows) + list(val_rows), "training and validation pairs")
    check_target_norm(config, out_channels)
    # stored_masks None (the default): the masks spotlight preprocess stored; True: any path_mask too
    wanted = config.stored_masks is not False and config.loss == "spotlight"
    any_mask = config.stored_masks is not None  # false: any mask, to say it is ignored
    stored = rows_with_masks(rows, strict=wanted, any_mask=any_mask)
    if wanted and stored and val_rows:  # held-out pairs are scored with their masks too
        rows_with_masks(list(val_rows) + list(rows), any_mask=any_mask)
    labels = not stored and any(mask_sources(r) is not None for r in rows)
    return DataPlan(in_channels, out_channels, channel_names(rows), bool(wanted and stored),
                    mask_use(config, stored, labels))


def training_rows(config) -> list[ManifestRow]:
    """The training pairs of ``config``: its manifest's rows, or its plate's fields of view."""
    if config.train_plate:
        return plate_rows(config.train_plate, config.signal_channels, config.target_channels, config.fields)
    return read_manifest(config.train_csv)


def validation_rows(config) -> list[ManifestRow]:
    """The held-out pairs named by ``val_csv`` or ``val_plate`` (``val_fraction`` is split off later)."""
    if config.val_plate:
        return plate_rows(config.val_plate, config.signal_channels, config.target_channels, config.val_fields)
    return read_manifest(config.val_csv) if config.val_csv else []


def channel_counts(rows: Sequence[ManifestRow], what: str) -> tuple[int, int]:
    """``(signal channels, target channels)`` shared by every row; a DataError naming the first row
    that differs from the first row otherwise."""
    first = (len(rows[0].signals), len(rows[0].targets))
    for row in rows[1:]:
        counts = (len(row.signals), len(row.targets))
        if counts != first:
            raise DataError(row.signal, f"{what}: this pair has {counts[0]} signal and {counts[1]} target channel(s), "
                                        f"the first pair ({rows[0].signal}) {first[0]} and {first[1]}; every pair of "
                                        f"a run must have the same channels")
    return first


def channel_names(rows: Sequence[ManifestRow]) -> dict:
    """``{"signal": [...], "target": [...]}``: each channel's name where every row names it alike (a channel
    of an OME-Zarr image or plate), else None (TIFF files have no channel names)."""
    def names(role: str) -> list:
        per_row = [[None if s.channel is None else str(s.channel) for s in getattr(r, role)] for r in rows]
        return [column[0] if len(set(column)) == 1 else None for column in zip(*per_row)]

    return {"signal": names("signals"), "target": names("targets")}


def preprocessed(row: ManifestRow) -> bool:
    """Whether the row's masks are foreground masks that ``spotlight preprocess`` stored: a manifest's
    ``path_mask`` written beside its ``otsu_threshold`` (a ``path_mask`` alone is read as the ground-truth
    labels evaluation scores against), or a Zarr image's ``fg_mask`` (found only with its Spotlight record)."""
    return bool(row.thresholds) if any(m is not None for m in row.masks) else True


def rows_with_masks(rows: Sequence[ManifestRow], strict: bool = True, any_mask: bool = False) -> bool:
    """True when every row has a stored mask per target channel (:func:`~spotlight_ops.data.dataset.mask_sources`;
    one of :func:`preprocessed` unless ``any_mask``), False when none has; when only some have: a DataError
    naming a row without (``strict``: the masks are to be used), else True."""
    present = [mask_sources(r) is not None and (any_mask or preprocessed(r)) for r in rows]
    if all(present):
        return True
    if any(present) and not strict:
        return True
    if any(present):
        missing = rows[present.index(False)]
        raise DataError(missing.target, f"has no stored foreground mask while {sum(present)} of the {len(rows)} "
                                        f"training pairs have one: run spotlight preprocess on every pair, or train "
                                        f"with --no-stored-masks")
    return False


def check_target_norm(config, target_channels: int) -> None:
    """Several z-scored target channels need per-(sample, channel) Otsu thresholds (the module docstring)."""
    if config.loss == "spotlight" and config.target_norm != "otsu" and target_channels > 1 and not config.per_channel:
        raise ValueError(f"target_norm {config.target_norm} with {target_channels} target channels needs per_channel "
                         f"(--per-channel): the loss then chooses each channel's Otsu threshold, not one over all "
                         f"channels; or use target_norm otsu (each channel's foreground at 0)")


def mask_use(config, masks_stored: bool, labels: bool = False) -> str:
    """The start line's words on stored masks (``labels``: the pairs have masks, not preprocess's)."""
    if config.loss != "spotlight" and (masks_stored or labels):
        return "stored masks unused by the MSE loss"
    if labels and config.stored_masks is None:
        return "masks: Y > T (the manifest's path_mask was not written by spotlight preprocess; --stored-masks uses it)"
    if not masks_stored:
        return "masks: Y > T (none stored)"
    if config.stored_masks is False:
        return "stored masks ignored (--no-stored-masks): Y > T"
    return "masks: the stored foreground masks (--no-stored-masks: Y > T)"
