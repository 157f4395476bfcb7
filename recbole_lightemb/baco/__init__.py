"""BACO's balanced co-clustering of users and items, compiled with numba (the method is ``methods/baco.py``)."""
