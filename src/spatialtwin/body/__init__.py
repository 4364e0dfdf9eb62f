"""Twin bodies: the canonical skeleton, poses, skinning, generated and imported bodies."""
