"""Raw files → DGL heterograph: registry, fetch, parse, split, build."""
