"""The engine's private kernel. Public names are re-exported by ``engine``."""
