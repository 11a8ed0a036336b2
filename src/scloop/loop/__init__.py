"""The generation recursion (``engine``) and the real/synthetic data policies (``policies``)."""
