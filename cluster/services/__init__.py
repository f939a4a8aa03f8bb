"""gRPC servicers: thin adapters that decode, call the core, and encode."""
