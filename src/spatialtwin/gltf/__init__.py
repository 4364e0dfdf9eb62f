"""gltf stage."""
