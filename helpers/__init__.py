"""helpers: the tested package behind the EEG -> image (CLIP semantic loss) notebook series."""
__version__ = "0.1.0"
