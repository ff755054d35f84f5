"""A dataset folder's own names, in one place: what SaveICLoRADataset writes and what the trainer,
the consistency scorer and the build transaction look for."""

from __future__ import annotations

MANIFEST_NAME = "metadata.jsonl"  # one record per composite (manifest.py)
IMAGES_DIR = "images"  # composites and their captions, side by side (<stem>.png + <stem>.txt)
SD_SCRIPTS_TOML = "dataset.toml"
AI_TOOLKIT_YAML = "ai_toolkit.yaml"
CONTACT_SHEET = "contact_sheet.png"
REMOVED_DIR = "removed"  # composites of sets that left the dataset, kept
REPLACED_DIR = "replaced"  # dated copies of what a build replaced that it had not written

# Where a build may rename, move or delete (transaction.py): nothing else in the folder is touched.
WRITABLE_DIRS = (IMAGES_DIR, REMOVED_DIR, REPLACED_DIR)
WRITABLE_FILES = (MANIFEST_NAME, SD_SCRIPTS_TOML, AI_TOOLKIT_YAML, CONTACT_SHEET)
