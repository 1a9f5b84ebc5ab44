"""Runtime: latency measurement and the profiling labels of the execution paths."""
