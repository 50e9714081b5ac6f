"""Input and output: audio reading and resampling, atomic writes, and the list formats (manifests)."""
