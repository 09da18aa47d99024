"""The engine's private kernel. Public names are re-exported by ``engine``."""

ENGINE_VERSION = "0.1.0"
"""Part of every cache key (with the worker-side sources) and of every run_started."""
