"""Header-only HLS C++ kernel library and project templates (installed as hwprune.hls)."""
