"""Engine-independent byte accounting."""
