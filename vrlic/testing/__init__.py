"""Test helpers that are not part of the method: the loopback fake zoo / Kodak / DIV2K server.
Nothing in the runtime layers imports it."""
