"""File formats: model archives, release folders, meshes and restricted unpickling."""
