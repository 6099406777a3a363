"""RPC methods, one module per family; ``registry`` gates and dispatches them."""
