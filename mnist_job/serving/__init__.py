"""Using the registered model: reading images the MNIST way, `mnist-job predict`, the Ray Serve app."""
