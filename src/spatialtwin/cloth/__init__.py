"""cloth stage."""
