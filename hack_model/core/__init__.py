"""The model's maths, each piece once, as small pure functions with shape notes.

torch (batched, differentiable): `rotations`, `blendshapes`, `larynx`, `kinematics`,
`skinning`, `normals`; the model's arrays as one read-only object in `basis`, and the
whole forward pass as one function of (basis, parameters) in `forward`.

numpy (float64, no torch; vendored into the Blender extension and used by the
default-model generator): `numpy_math`.

This file imports nothing so that the numpy module can be vendored alone.
"""
