"""Measuring codecs: RD points with real bitstreams, BD-rates, the verdict rule, JPEG/WebP,
CompressAI's published results."""
