"""AGAD training: variants, losses, BatchNorm handling and the training loop (paper Algorithm 1)."""
