"""Wire models: the shapes clients send and receive."""
