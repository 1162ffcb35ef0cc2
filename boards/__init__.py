"""Board catalog: one YAML file per board (installed as hwprune.boards)."""
