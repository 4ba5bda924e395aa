#!/usr/bin/env python3
"""Independent decryptor for the Warden envelope format, version 1.

Written from docs/spec/envelope.md alone (not from the reference implementation), to check that
the specification is complete. Only type-1 (local keyring) slots can be opened.

Usage:
    independent_decrypt.py --keyring KEYRING.json [--expect-context KEY=VALUE ...] INPUT OUTPUT

INPUT and OUTPUT may be "-" (stdin / stdout). Plaintext is never released before every chunk has
verified: a file output is written to a temporary file in the same directory and renamed on
success; stdout output is buffered and written only on success.

Exit codes (one line on stderr for every failure):
    0  success
    1  usage error, unreadable input, bad keyring, output not writable
    2  malformed, unsupported or truncated envelope (public data only)
    3  decryption failed (slot unwrap, header MAC, commitment or chunk tag)
    4  no key for any slot
    5  encryption context does not match --expect-context
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import io
import json
import os
import stat
import sys
import tempfile
from typing import BinaryIO, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_MALFORMED = 2
EXIT_DECRYPTION_FAILED = 3
EXIT_NO_KEY = 4
EXIT_CONTEXT = 5

MAGIC = b"WRDN"
MIN_HEADER = 62
MAX_HEADER = 1048576
MAC_LEN = 32
VERSION = 1
SUITE = 1
MIN_EXP = 14
MAX_EXP = 24
FLAG_LENGTH = 0x01
MAX_MESSAGE = 2**52 - 1  # "< 2^52"
MAX_CONTEXT_ENTRIES = 64
MAX_CONTEXT_KEY = 255
MAX_CONTEXT_VALUE = 4096
MAX_SLOTS = 16
MAX_REF = 255
MAX_WRAPPED = 4096
SLOT_LOCAL = 1
SLOT_KMS = 2
LOCAL_WRAPPED_LEN = 60
TAG_LEN = 16
SALT_LEN = 24
COMMITMENT_LEN = 32
MAX_CHUNKS = 1 << 38
KEYRING_FORMAT = "warden-dev-keyring/v1"

CORE_LABEL = b"warden/envelope/v1 core" + b"\x00"
SLOT_LABEL = b"warden/envelope/v1 slot" + b"\x00"
MAC_INFO = b"warden/envelope/v1 header-mac"
PAYLOAD_INFO = b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM" + b"\x00"


class Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def malformed(message: str) -> NoReturn:
    raise Failure(EXIT_MALFORMED, "malformed envelope: " + message)


def truncated(message: str) -> NoReturn:
    raise Failure(EXIT_MALFORMED, "truncated envelope: " + message)


def decryption_failed() -> NoReturn:
    # Steps 4-6: one indistinguishable error, whatever failed.
    raise Failure(EXIT_DECRYPTION_FAILED, "decryption failed")


# --- primitives ---------------------------------------------------------------------------------


def hkdf_expand_sha512(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA512(), length=length, info=info).derive(prk)


def u8(n: int) -> bytes:
    return n.to_bytes(1, "big")


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def read_upto(f: BinaryIO, n: int) -> bytes:
    """Read up to n bytes, fewer only at end of input."""
    parts = []
    while n > 0:
        b = f.read(n)
        if not b:
            break
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


# --- header -------------------------------------------------------------------------------------


class Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            malformed(f"{what} runs past the end of the header")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def utf8(self, n: int, what: str) -> str:
        raw = self.take(n, what)
        try:
            # Python's strict UTF-8 decoder rejects overlong forms, surrogates and > U+10FFFF.
            return raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            malformed(f"{what} is not valid UTF-8")


class Header:
    def __init__(self) -> None:
        self.raw = b""
        self.header_length = 0
        self.chunk_exponent = 0
        self.has_length = False
        self.plaintext_length = 0
        self.context: dict[str, str] = {}
        self.core_bytes = b""
        self.slots: list[tuple[int, str, bytes]] = []
        self.mac = b""


def read_header(f: BinaryIO) -> Header:
    """Step 1: read and parse the header, enforcing every rule of the spec."""
    prefix = read_upto(f, 8)
    if len(prefix) < 4 or prefix[:4] != MAGIC:
        if len(prefix) < 4 and MAGIC.startswith(prefix):
            truncated("shorter than the magic")
        malformed("not a Warden envelope (bad magic)")
    if len(prefix) < 8:
        truncated("header length missing")
    header_length = int.from_bytes(prefix[4:8], "big")
    # Check the bound before reading or allocating.
    if not MIN_HEADER <= header_length <= MAX_HEADER:
        malformed(f"header_length {header_length} outside {MIN_HEADER}..{MAX_HEADER}")
    rest = read_upto(f, header_length - 8)
    if len(rest) != header_length - 8:
        truncated("header is cut short")
    raw = prefix + rest

    h = Header()
    h.raw = raw
    h.header_length = header_length
    h.mac = raw[header_length - MAC_LEN :]
    body = Cursor(raw[8 : header_length - MAC_LEN])

    # core
    version = body.uint(1, "version")
    if version != VERSION:
        malformed(f"unsupported version {version}")
    suite = body.uint(1, "suite")
    if suite != SUITE:
        malformed(f"unsupported suite {suite}")
    e = body.uint(1, "chunk_exponent")
    if not MIN_EXP <= e <= MAX_EXP:
        malformed(f"chunk_exponent {e} outside {MIN_EXP}..{MAX_EXP}")
    h.chunk_exponent = e
    flags = body.uint(1, "flags")
    if flags & ~FLAG_LENGTH:
        malformed(f"reserved flag bits set (flags = 0x{flags:02x})")
    h.has_length = bool(flags & FLAG_LENGTH)
    plen = body.uint(8, "plaintext_length")
    if h.has_length:
        if plen > MAX_MESSAGE:
            malformed(f"plaintext_length {plen} is not below 2^52")
    elif plen != 0:
        malformed("plaintext_length is non-zero but the length flag is clear")
    h.plaintext_length = plen
    count = body.uint(2, "context_count")
    if count > MAX_CONTEXT_ENTRIES:
        malformed(f"context_count {count} exceeds {MAX_CONTEXT_ENTRIES}")
    previous: bytes | None = None
    for i in range(count):
        klen = body.uint(2, f"context key {i} length")
        if not 1 <= klen <= MAX_CONTEXT_KEY:
            malformed(f"context key {i} length {klen} outside 1..{MAX_CONTEXT_KEY}")
        kraw = body.data[body.pos : body.pos + klen]
        key = body.utf8(klen, f"context key {i}")
        vlen = body.uint(2, f"context value {i} length")
        if vlen > MAX_CONTEXT_VALUE:
            malformed(f"context value {i} length {vlen} exceeds {MAX_CONTEXT_VALUE}")
        value = body.utf8(vlen, f"context value {i}")
        # Strictly ascending unsigned bytewise order (Python bytes comparison: prefix sorts first).
        if previous is not None and not previous < kraw:
            malformed(f"context keys not in strictly ascending byte order at entry {i}")
        previous = kraw
        h.context[key] = value
    h.core_bytes = body.data[: body.pos]

    # slots
    slot_count = body.uint(1, "slot_count")
    if not 1 <= slot_count <= MAX_SLOTS:
        malformed(f"slot_count {slot_count} outside 1..{MAX_SLOTS}")
    for i in range(slot_count):
        slot_type = body.uint(1, f"slot {i} type")
        if slot_type not in (SLOT_LOCAL, SLOT_KMS):
            malformed(f"slot {i} has unknown type {slot_type}")
        rlen = body.uint(2, f"slot {i} ref length")
        if not 1 <= rlen <= MAX_REF:
            malformed(f"slot {i} ref length {rlen} outside 1..{MAX_REF}")
        ref = body.utf8(rlen, f"slot {i} ref")
        wlen = body.uint(2, f"slot {i} wrapped key length")
        if not 1 <= wlen <= MAX_WRAPPED:
            malformed(f"slot {i} wrapped key length {wlen} outside 1..{MAX_WRAPPED}")
        wrapped = body.take(wlen, f"slot {i} wrapped key")
        h.slots.append((slot_type, ref, wrapped))

    if body.pos != len(body.data):
        malformed(f"{len(body.data) - body.pos} extra bytes after the slots")
    return h


def core_digest(core_bytes: bytes) -> bytes:
    return hashlib.sha256(CORE_LABEL + core_bytes).digest()


def slot_aad(slot_type: int, ref: str, digest: bytes) -> bytes:
    ref_bytes = ref.encode("utf-8")
    return SLOT_LABEL + u8(slot_type) + u16(len(ref_bytes)) + ref_bytes + digest


# --- keyring ------------------------------------------------------------------------------------


def load_keyring(path: str) -> dict[str, bytes]:
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise Failure(EXIT_USAGE, f"cannot read keyring {path}: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != KEYRING_FORMAT:
        raise Failure(EXIT_USAGE, f"keyring {path} is not a {KEYRING_FORMAT} document")
    keys = doc.get("keys")
    if not isinstance(keys, list):
        raise Failure(EXIT_USAGE, f"keyring {path} has no keys list")
    result: dict[str, bytes] = {}
    for entry in keys:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise Failure(EXIT_USAGE, f"keyring {path} has a key without an id")
        try:
            key = base64.b64decode(entry.get("key", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise Failure(EXIT_USAGE, f"keyring key {entry['id']} is not base64") from None
        if len(key) != 32:
            raise Failure(EXIT_USAGE, f"keyring key {entry['id']} is not 32 bytes")
        result[entry["id"]] = key
    return result


# --- decryption ---------------------------------------------------------------------------------


def check_context(h: Header, expected: dict[str, str]) -> None:
    """Step 2: every expected entry must be present with exactly that value (no normalisation)."""
    differing = sorted(k for k, v in expected.items() if h.context.get(k) != v)
    if differing:
        raise Failure(EXIT_CONTEXT, "encryption context mismatch for keys: " + ", ".join(differing))


def select_slot(h: Header, keyring: dict[str, bytes]) -> tuple[int, str, bytes, bytes]:
    """Step 3: the first slot whose key we hold, by slot_type and ref only."""
    for slot_type, ref, wrapped in h.slots:
        if slot_type == SLOT_LOCAL and ref in keyring:
            return slot_type, ref, wrapped, keyring[ref]
    names = ", ".join(f"{'local' if t == SLOT_LOCAL else 'kms'}:{r}" for t, r, _ in h.slots)
    raise Failure(EXIT_NO_KEY, f"no key for any slot (slots: {names})")


def unwrap_and_check_mac(h: Header, slot: tuple[int, str, bytes, bytes], digest: bytes) -> bytes:
    """Step 4."""
    slot_type, ref, wrapped, kek = slot
    if len(wrapped) != LOCAL_WRAPPED_LEN:
        decryption_failed()
    try:
        data_key = AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], slot_aad(slot_type, ref, digest))
    except InvalidTag:
        decryption_failed()
    mac_key = hkdf_expand_sha512(data_key, MAC_INFO, 32)
    expected = hmac.new(mac_key, h.raw[: h.header_length - MAC_LEN], hashlib.sha256).digest()
    if not hmac.compare_digest(expected, h.mac):
        decryption_failed()
    return data_key


def expected_length_from_size(payload_size: int, chunk: int) -> int | None:
    """Geometry: the message length implied by a payload of payload_size bytes, or None."""
    b = payload_size - SALT_LEN - COMMITMENT_LEN
    if b < TAG_LEN:
        return None
    f, r = divmod(b, chunk + TAG_LEN)
    if r < TAG_LEN:
        return None
    return f * chunk + r - TAG_LEN


def decrypt_payload(f: BinaryIO, h: Header, data_key: bytes, digest: bytes, out: BinaryIO) -> None:
    """Steps 5 and 6."""
    chunk = 1 << h.chunk_exponent
    sealed = chunk + TAG_LEN

    # Step 5.
    head = read_upto(f, SALT_LEN + COMMITMENT_LEN)
    if len(head) != SALT_LEN + COMMITMENT_LEN:
        truncated("payload shorter than salt and commitment")
    salt, commitment = head[:SALT_LEN], head[SALT_LEN:]
    derived = hkdf_expand_sha512(data_key, PAYLOAD_INFO + salt + digest, 32 + 12 + 32)
    aead_key, base_nonce, expected_commitment = derived[:32], derived[32:44], derived[44:]
    if not hmac.compare_digest(expected_commitment, commitment):
        decryption_failed()

    # Step 6. When the input is a regular file, its size is public: check the geometry and the
    # declared length up front (the same checks are repeated while streaming).
    try:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode):
            implied = expected_length_from_size(st.st_size - h.header_length, chunk)
            if implied is None:
                truncated("payload size is not a valid chunk sequence")
            if h.has_length and implied != h.plaintext_length:
                truncated(f"file holds {implied} bytes of plaintext, header declares {h.plaintext_length}")
    except (OSError, ValueError, AttributeError):
        pass

    aead = AESGCM(aead_key)
    nonce_base = int.from_bytes(base_nonce, "big")
    total = 0
    index = 0
    current = read_upto(f, sealed)
    while True:
        if index >= MAX_CHUNKS:
            malformed("more than 2^38 chunks")
        if len(current) == sealed:
            # A full-size chunk is non-final only if more bytes follow.
            following = read_upto(f, sealed)
            if not following:
                truncated("ends on a full-size chunk (missing final chunk)")
        else:
            following = None
            if len(current) < TAG_LEN:
                truncated("final chunk shorter than a tag")
        nonce = (nonce_base ^ index).to_bytes(12, "big")
        try:
            plain = aead.decrypt(nonce, current, None)
        except InvalidTag:
            decryption_failed()
        total += len(plain)
        if total > MAX_MESSAGE or (h.has_length and total > h.plaintext_length):
            truncated("more plaintext than declared")
        out.write(plain)
        if following is None:
            break
        current = following
        index += 1
    if h.has_length and total != h.plaintext_length:
        truncated(f"decrypted {total} bytes, header declares {h.plaintext_length}")


def parse_expectations(items: list[str]) -> dict[str, str]:
    expected: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise Failure(EXIT_USAGE, f"--expect-context wants KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        expected[k] = v
    return expected


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Independent Warden envelope v1 decryptor")
    parser.add_argument("--keyring", required=True)
    parser.add_argument("--expect-context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("input")
    parser.add_argument("output")
    args = parser.parse_args(argv)

    expected = parse_expectations(args.expect_context)
    keyring = load_keyring(args.keyring)

    try:
        inp: BinaryIO = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    except OSError as err:
        raise Failure(EXIT_USAGE, f"cannot open {args.input}: {err.strerror}") from None
    with inp:
        h = read_header(inp)  # step 1
        check_context(h, expected)  # step 2
        slot = select_slot(h, keyring)  # step 3
        digest = core_digest(h.core_bytes)
        data_key = unwrap_and_check_mac(h, slot, digest)  # step 4

        if args.output == "-":
            buf = io.BytesIO()
            decrypt_payload(inp, h, data_key, digest, buf)  # steps 5-6
            sys.stdout.buffer.write(buf.getvalue())
            sys.stdout.buffer.flush()
            return

        out_dir = os.path.dirname(os.path.abspath(args.output))
        try:
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".independent-decrypt-", suffix=".tmp")
        except OSError as err:
            raise Failure(EXIT_USAGE, f"cannot write to {out_dir}: {err.strerror}") from None
        ok = False
        try:
            with os.fdopen(fd, "wb") as out:
                decrypt_payload(inp, h, data_key, digest, out)  # steps 5-6
            os.replace(tmp, args.output)
            ok = True
        finally:
            if not ok:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def main() -> int:
    try:
        run(sys.argv[1:])
    except Failure as err:
        print(f"independent_decrypt: {err.message}", file=sys.stderr)
        return err.code
    except OSError as err:
        print(f"independent_decrypt: I/O error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
