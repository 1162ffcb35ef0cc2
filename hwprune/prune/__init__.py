"""Pruning: sparsity patterns the hardware can exploit, and the passes that apply them."""
