"""The report reads run folders with the one reader cnnlab has (`cnnlab.run_files`)."""

from cnnlab.run_files import RunFolder, class_counts, read_run_folder

__all__ = ["RunFolder", "class_counts", "read_run_folder"]
