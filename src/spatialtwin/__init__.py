"""SpatialTwin: an open backend for 3D try-on on rigged, true-scale digital twins."""

__version__ = "0.1.0"
