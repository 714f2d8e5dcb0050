"""Images: the embedded photographs, training-crop samplers, Kodak / DIV2K downloads, the zoo."""
