"""Training the zoom model: manifests, the paper importer, augmentation, the loop, DDP."""
