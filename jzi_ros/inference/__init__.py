"""Inference: the Localizer (image in -> Fix out), decoding, uncertainty and backends."""
