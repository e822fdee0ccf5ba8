"""Optional encryption at rest of workflow history: an AES-GCM payload codec.

With LONGTHREAD_PAYLOAD_KEY set (32 bytes, base64), every payload the client and the worker
send to Temporal (update arguments, activity inputs and results, state handed to
continue-as-new) is encrypted, so message text never sits in Temporal's database in clear.
The key id (a hash of the key) travels in the metadata, so a rotated key fails loudly.
Without a key, a process still installs a codec (KeylessCodec) that passes payloads through
and names the setting when it meets an encrypted one: otherwise the SDK's converter fails
with a bare `KeyError: 'Unknown payload encoding binary/encrypted-aes-gcm'`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from memory.errors import InvalidInputError

__all__ = ["ENCODING", "AesGcmCodec", "KeylessCodec", "PayloadKeyError", "data_converter"]

ENCODING = b"binary/encrypted-aes-gcm"


class PayloadKeyError(InvalidInputError):
    """A payload this process cannot read with its LONGTHREAD_PAYLOAD_KEY (none, or another):
    every worker and client of a deployment must share one key."""

    def __init__(self, problem: str) -> None:
        super().__init__("LONGTHREAD_PAYLOAD_KEY", problem)


def _key_ids(payloads: Sequence[Payload]) -> str:
    return ", ".join(sorted({p.metadata.get("key-id", b"?").decode() for p in payloads}))


class KeylessCodec(PayloadCodec):
    """The codec of a process with no key: payloads pass as they are, and an encrypted one is
    refused naming the setting and the key id it was sealed with."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        sealed = [p for p in payloads if p.metadata.get("encoding") == ENCODING]
        if sealed:
            raise PayloadKeyError(
                f"not set here, but this payload is encrypted (key id {_key_ids(sealed)}); "
                "set the key the workers and the other clients use")
        return list(payloads)


class AesGcmCodec(PayloadCodec):
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise InvalidInputError("LONGTHREAD_PAYLOAD_KEY", "must be 32 bytes, base64-encoded")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:16].encode()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            nonce = os.urandom(12)
            sealed = self._aead.encrypt(nonce, payload.SerializeToString(), self.key_id)
            out.append(Payload(metadata={"encoding": ENCODING, "key-id": self.key_id},
                               data=nonce + sealed))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)  # written before encryption was turned on
                continue
            if payload.metadata.get("key-id") != self.key_id:
                raise PayloadKeyError(
                    f"this payload was encrypted with another key (key id {_key_ids([payload])}"
                    f", this process's is {self.key_id.decode()}); every worker and client "
                    "must share one key")
            plain = self._aead.decrypt(payload.data[:12], payload.data[12:], self.key_id)
            decoded = Payload()
            decoded.ParseFromString(plain)
            out.append(decoded)
        return out


def data_converter(payload_key: str | None) -> DataConverter:
    """The pydantic converter, with the AES-GCM codec when a key is configured (else the
    keyless one, which only names the setting when a payload turns out to be encrypted)."""
    if not payload_key:
        return dataclasses.replace(pydantic_data_converter, payload_codec=KeylessCodec())
    try:
        key = base64.b64decode(payload_key, validate=True)
    except ValueError:
        raise InvalidInputError("LONGTHREAD_PAYLOAD_KEY", "is not valid base64") from None
    return dataclasses.replace(pydantic_data_converter, payload_codec=AesGcmCodec(key))
