"""Speed: decode and prefill tokens/s, time to first token, batching and latency spread, from the
bytes and FLOPs each device handles per token (a roofline with calibrated efficiencies)."""
