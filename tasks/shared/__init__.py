"""What several objectives really share: the special-token template, masking, losses, packing, rng."""
