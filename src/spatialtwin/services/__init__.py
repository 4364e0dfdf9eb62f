"""Services: the one layer that combines numerics, formats, the store and jobs.

Handlers in `server/` and commands in `cli/` call these functions; nothing below this layer
reads files or records and runs numerics on them at once (see ../shared/ARCHITECTURE.md).
"""
