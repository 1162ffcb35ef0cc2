"""The simulator: per-layer analytical cost primitives and the whole-design estimate (installed as hwprune.sim)."""
