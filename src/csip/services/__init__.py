"""Use cases over the store: registration, reads with render-once caching, administration."""
