"""Models: ResNets with global average pooling, the standard CNN and the DB-VAE."""
