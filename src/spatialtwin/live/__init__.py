"""The smart mirror's live loop: camera frame (or landmarks) → twin pose → cloth → vertex stream.

Modules: `garments` (a look's draped garment made ready: stream order, cloth levels, skin
weights), `body` (the twin's welded surface posed per frame), `cloth_stage` (one garment
stepping at its level on the shared body collider), `quality` (adaptive choice of the cloth
level), `frames` (checks on what a mirror sends), `session` (`MirrorSession`: the two-thread
pipeline and its results). The HTTP/WebSocket protocol on top is the server's; see
docs/live-pipeline.md. Camera frames stay in memory; only poses and cloth leave a session.
"""
