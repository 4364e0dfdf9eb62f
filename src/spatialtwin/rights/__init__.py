"""rights stage."""
