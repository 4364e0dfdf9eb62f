"""Body tracking: camera frames → MediaPipe pose landmarks → a smooth pose of the twin.

Modules: `bundle` (MediaPipe .task bundles built at install time from npm), `landmarker`
(PoseLandmarker in VIDEO mode, one shopper), `one_euro` (landmark filter), `retarget`
(world landmarks → joint rotations of the canonical skeleton), `shopper_scale` (stature for
choosing a twin size), `upright` (the camera's tilt undone, feet on the floor), `tracker` (all
of it over time, holding lost limbs), `poses_json` (the offline output format, see POSES.md).
Frames never leave memory; only poses do.
"""
