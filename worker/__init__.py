"""The worker that executes started ``df`` workflow instances durably.
Installed as ``pgdurable.worker``."""
