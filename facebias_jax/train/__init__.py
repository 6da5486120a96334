"""Training: losses, DB-VAE debiasing, jit-compiled steps, the loop, checkpoints, sharding."""
