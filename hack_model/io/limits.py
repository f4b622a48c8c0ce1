"""Size limits of the numpy-only readers (see hack_model/io/safe_pickle/budget.py for the
reasons and the rest of the budget). A module of its own so that the Blender add-on can
vendor `npy.py` and `npz.py` without the unpickler."""

MAX_FILE_BYTES = 1 << 30  # largest real model file (SMPL-X) is ~300 MB
MAX_TOTAL_BYTES = 1 << 30  # arrays one file may make
BYTES_PER_FILE_BYTE = 4
SLACK_BYTES = 64 << 20
MAX_ARRAY_ELEMENTS = 1 << 28
MAX_NDIM = 32
NPZ_RATIO = 64  # uncompressed / archive size, on top of SLACK_BYTES
MAX_METADATA_CHARS = 1 << 16
MAX_NAME_CHARS = 1024
