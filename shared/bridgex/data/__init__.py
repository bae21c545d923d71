"""Data preparation: fetch registries data, build dictionaries, splits and monolingual text."""
