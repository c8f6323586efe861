"""The file format of checkpoints and model files: a ``torch.save`` archive that carries its own digest.

A file is the zip archive ``torch.save(obj)`` writes (records ``archive/data.pkl``,
``archive/data/0``, ...), so ``torch.load(path, weights_only=True)`` returns ``obj``, plus records that
torch ignores, appended under ``archive/spotlight/``:

``metadata.json``
    (model files only) the model's description as UTF-8 JSON: plain numbers, strings, lists and dicts.
``sha256``
    64 hex digits: the SHA-256 of every other record, in archive order, each hashed as its name
    inside the archive's folder (``data.pkl``, UTF-8), a zero byte, its length (8 bytes, little
    endian) and its bytes:

        digest = SHA-256( concat_r  name_r + b"\\0" + len_r + data_r ),  r over the records but sha256

The records are read with torch's own zip reader, writing and reading, so the digest covers the bytes
``torch.load`` reads (a damaged zip directory can make two zip readers see different bytes); the
alignment padding between records, which no reader reads, is not covered.
Reading (:func:`read`) checks that the file is a complete zip archive (a truncated file has lost its
directory at the end) and that the digest holds, and only then unpickles, with ``weights_only=True``;
any damage raises :class:`CheckpointError` naming the file and what is wrong, in one line.

Files written before this format (the *framed* format: the 16 bytes ``SPOTLIGHT-CKPT01``, the
SHA-256 of the payload, its length as 8 bytes little endian, then the ``torch.save`` payload) are
read too, with the same checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import torch

LEGACY_MAGIC = b"SPOTLIGHT-CKPT01"
_LEGACY_HEADER = struct.Struct("<16s32sQ")
_ZIP_MAGIC = b"PK\x03\x04"
METADATA_RECORD = "spotlight/metadata.json"
DIGEST_RECORD = "spotlight/sha256"


class CheckpointError(RuntimeError):
    """A checkpoint or model file that cannot be used (missing, truncated, corrupted); names the file."""


class Archive(NamedTuple):
    """What a file holds: the unpickled object, the metadata (None without), and the digest (hex)."""

    obj: Any
    metadata: Optional[dict]
    digest: str


def encode(obj: Any, metadata: Optional[dict] = None) -> bytes:
    """The file's bytes: ``torch.save(obj)``, then the metadata record (if given) and the digest record."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    if metadata is not None:
        with zipfile.ZipFile(buffer, "a") as archive:
            archive.writestr(_prefix(archive) + METADATA_RECORD, _json(metadata))
    digest = _records_digest(_reader(buffer.getvalue()))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(_prefix(archive) + DIGEST_RECORD, digest)
    return buffer.getvalue()


def digest_of(encoded: bytes) -> str:
    """The digest recorded in :func:`encode`'s bytes."""
    return bytes(_reader(encoded).get_record(DIGEST_RECORD)).decode("ascii")


def read_digest(path: Union[str, Path]) -> Optional[str]:
    """The digest a file records (hex), without checking it; None when the file is unreadable."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_LEGACY_HEADER.size)
        if head.startswith(LEGACY_MAGIC) and len(head) == _LEGACY_HEADER.size:
            return _LEGACY_HEADER.unpack(head)[1].hex()
        text = bytes(torch._C.PyTorchFileReader(str(path)).get_record(DIGEST_RECORD)).decode("ascii")
    except Exception:  # noqa: BLE001  unreadable for any reason: no digest
        return None
    return text if len(text) == 64 else None


def read(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> Archive:
    """The verified contents of a file in either format; :class:`CheckpointError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read checkpoint ({err})") from err
    if raw.startswith(_ZIP_MAGIC):
        data = raw
        metadata, digest = _verified_zip(path, raw)
    elif raw.startswith(LEGACY_MAGIC):
        (data, digest), metadata = _verified_legacy(path, raw), None
    elif not raw or _ZIP_MAGIC.startswith(raw) or LEGACY_MAGIC.startswith(raw):
        raise CheckpointError(f"{path}: checkpoint truncated ({len(raw)} bytes)")
    else:
        raise CheckpointError(f"{path}: not a spotlight checkpoint (neither a torch.save archive nor the framed format)")
    try:
        obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # an intact file from an incompatible version
        raise CheckpointError(f"{path}: cannot unpickle checkpoint ({type(err).__name__}: {_first_line(err)})") from err
    return Archive(obj, metadata, digest)


def _verified_zip(path: Path, raw: bytes) -> tuple[Optional[dict], str]:
    """``(metadata, digest)`` of a zip-format file whose records all check out.

    The records are read with torch's own zip reader, so the digest covers exactly the bytes
    ``torch.load`` will read (a damaged zip directory can make two readers see different bytes).
    """
    try:
        reader = _reader(raw)
    except Exception as err:  # noqa: BLE001  damaged bytes raise RuntimeError, ValueError, ...
        raise CheckpointError(f"{path}: checkpoint truncated or damaged: its zip directory is missing or unreadable "
                              f"({_first_line(err)})") from None
    if not reader.has_record(DIGEST_RECORD):
        raise CheckpointError(f"{path}: not a spotlight checkpoint (a torch archive without the {DIGEST_RECORD} "
                              f"record spotlight writes)")
    try:
        recorded = bytes(reader.get_record(DIGEST_RECORD)).decode("ascii")
        actual = _records_digest(reader)
        metadata = (json.loads(bytes(reader.get_record(METADATA_RECORD)).decode("utf-8"))
                    if reader.has_record(METADATA_RECORD) else None)
    except Exception as err:  # noqa: BLE001  as above: every kind a damaged record raises
        raise CheckpointError(f"{path}: checkpoint corrupted ({type(err).__name__}: {_first_line(err)})") from None
    if recorded != actual:
        raise CheckpointError(f"{path}: checkpoint corrupted (the SHA-256 of its records does not match the one it "
                              f"records)")
    if metadata is not None and not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: checkpoint corrupted ({METADATA_RECORD} is not a JSON object)")
    return metadata, recorded


def _verified_legacy(path: Path, raw: bytes) -> tuple[bytes, str]:
    """``(payload bytes, digest)`` of a framed-format file whose header checks out."""
    if len(raw) < _LEGACY_HEADER.size:
        raise CheckpointError(f"{path}: checkpoint truncated ({len(raw)} bytes, shorter than its header)")
    _, digest, length = _LEGACY_HEADER.unpack_from(raw)
    data = raw[_LEGACY_HEADER.size:]
    if len(data) != length:
        raise CheckpointError(f"{path}: checkpoint truncated or padded: header says {length} payload bytes, "
                           f"file holds {len(data)}")
    if hashlib.sha256(data).digest() != digest:
        raise CheckpointError(f"{path}: checkpoint corrupted (SHA-256 of the payload does not match its header)")
    return data, digest.hex()


def _prefix(archive: zipfile.ZipFile) -> str:
    """The folder torch puts every record in (``archive/`` for an archive written to memory)."""
    first = archive.namelist()[0]
    return first.split("/", 1)[0] + "/"


def _reader(raw: bytes):
    """torch's zip reader (what ``torch.load`` reads with) over ``raw``."""
    return torch._C.PyTorchFileReader(io.BytesIO(raw))


def _records_digest(reader) -> str:
    """SHA-256 (hex) of every record but the digest's, as the module docstring defines it."""
    digest = hashlib.sha256()
    for name in reader.get_all_records():
        if name == DIGEST_RECORD:
            continue
        data = reader.get_record(name)
        digest.update(name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _first_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200]


def _json(metadata: dict) -> bytes:
    def plain(value):
        if hasattr(value, "item"):  # a numpy or torch scalar
            return value.item()
        raise TypeError(f"model metadata: {type(value).__name__} {value!r} is not a plain number, string, list "
                        f"or dict")

    return json.dumps(metadata, default=plain, sort_keys=True).encode("utf-8")
