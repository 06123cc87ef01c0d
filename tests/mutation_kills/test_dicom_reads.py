"""DICOM frames and reader (mutation kills, sixth round)."""
