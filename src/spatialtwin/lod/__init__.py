"""lod stage."""
