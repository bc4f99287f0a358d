"""One module per inference engine: its runtime rules, placements and commands."""
