"""Planning: the placements an engine can express on a rig, ranked."""
