"""Programs of their own, outside the engine's API: the crash simulator, the workload
child it kills, and the demonstration.

The top layer: may import anything below.
"""
