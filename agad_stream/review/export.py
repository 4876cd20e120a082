"""The label store as files: an MVTec folder for ``agad train --data folder:DIR``, and counts.

::

    DIR/train/good/<name>        frames operators marked normal
    DIR/train/<defect>/<name>    confirmed anomalies, by defect name (``anomaly`` when unnamed)
    DIR/decisions.csv            one row per decided frame: every header of its label record

Images are written as the camera sent them, byte for byte; raw pixels (which no image reader
opens) become PNG. File names come from the frame_id, made safe, plus a digest that keeps two ids
that look alike apart.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2

from agad_stream.preprocess import RAW_CONTENT_TYPE, decode_image
from agad_stream.review.labels import LabelRecord, LabelStore

SUFFIXES = {
    "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/pjpeg": ".jpg", "image/png": ".png",
    "image/bmp": ".bmp", "image/x-bmp": ".bmp", "image/x-ms-bmp": ".bmp", "image/tiff": ".tif",
    "image/tif": ".tif", "image/webp": ".webp",
}  # fmt: skip
NORMAL_FOLDER, UNNAMED_DEFECT = "good", "anomaly"
CSV_FIELDS = ("frame_id", "file", "label", "defect", "reviewer", "decided_at", "camera_id", "ts_ms",
              "model_version", "score", "content_type", "offset")  # fmt: skip


@dataclass(frozen=True)
class Exported:
    directory: Path
    normal: int
    anomalous: dict[str, int]


def export_labels(store: LabelStore, out: Path) -> Exported:
    """Write every decided frame of ``store`` under ``out`` (see the module docstring)."""
    rows = []
    counts: Counter[str] = Counter()
    for label in sorted(store.labels.values(), key=lambda record: record.offset):
        folder = NORMAL_FOLDER if label.label == "normal" else _safe(label.defect) or UNNAMED_DEFECT
        data, suffix = _file_bytes(label)
        path = out / "train" / folder / (_file_name(label.frame_id) + suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        counts[folder] += 1
        rows.append(
            {
                "frame_id": label.frame_id,
                "file": str(path.relative_to(out)),
                "label": label.label,
                "defect": label.defect,
                "reviewer": label.reviewer,
                "decided_at": label.decided_at,
                "camera_id": label.camera_id,
                "ts_ms": label.ts_ms,
                "model_version": label.model_version,
                "score": label.score,
                "content_type": label.content_type,
                "offset": label.offset,
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    with (out / "decisions.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    normal = counts.pop(NORMAL_FOLDER, 0)
    return Exported(out, normal, dict(counts))


def label_stats(store: LabelStore) -> dict[str, dict[str, int]]:
    """Counts of decisions by label, defect, camera, reviewer and model version."""
    labels = list(store.labels.values())
    return {
        "label": dict(Counter(r.label for r in labels)),
        "defect": dict(Counter(r.defect or "(unnamed)" for r in labels if r.label == "anomaly")),
        "camera": dict(Counter(r.camera_id for r in labels)),
        "reviewer": dict(Counter(r.reviewer for r in labels)),
        "model_version": dict(Counter(r.model_version for r in labels)),
    }


MAGIC = (
    (b"\xff\xd8", ".jpg"), (b"\x89PNG", ".png"), (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"),
)  # fmt: skip


def _file_bytes(label: LabelRecord) -> tuple[bytes, str]:
    """The bytes to write and their suffix: the frame as sent when a reader can open it, else PNG."""
    media_type = label.content_type.split(";")[0].strip().lower()
    if media_type != RAW_CONTENT_TYPE:
        suffix = SUFFIXES.get(media_type) or next((s for m, s in MAGIC if label.image.startswith(m)), None)
        if suffix is None and label.image[8:12] == b"WEBP":
            suffix = ".webp"
        if suffix is not None:
            return label.image, suffix
    image = decode_image(label.image, label.content_type)
    pixels = image if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError(f"cannot encode the frame {label.frame_id} as PNG")
    return encoded.tobytes(), ".png"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80]


def _file_name(frame_id: str) -> str:
    return f"{_safe(frame_id) or 'frame'}-{hashlib.sha256(frame_id.encode()).hexdigest()[:8]}"
