"""Runtime above the model: interleaved latency measurement and int8 execution of the sliced paths."""
