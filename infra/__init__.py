"""The bottom layer: one settings object, service-client factories, structured logs, the local stack.

Imports nothing of ours above `schemas`."""
