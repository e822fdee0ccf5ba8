"""The payload codec lives with the client (`longthread.codec`); the worker uses the same."""

from longthread.codec import ENCODING, AesGcmCodec, data_converter

__all__ = ["ENCODING", "AesGcmCodec", "data_converter"]
