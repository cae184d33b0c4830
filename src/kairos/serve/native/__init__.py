"""Native (C++) CPU kernels of the serve engine, compiled on first use; see `build` and `varlen`."""
