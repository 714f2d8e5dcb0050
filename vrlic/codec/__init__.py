"""The codec: architectures, variable-step quantization with its reconstruction offsets, the
variable-rate models (modification 3: the variable-rate hyper latent lives in ``vbr``), model
files, the bitstream container and the rate estimate."""
