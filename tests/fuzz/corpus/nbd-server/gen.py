#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""Writes the seed corpus for fuzz-nbd-server: recorded client sessions
(the option and request sequences qemu-img, nbdinfo, nbdcopy and a
hostile client send, and against a TLS-only server).  Run from this directory."""
import struct

IHAVEOPT = 0x49484156454F5054


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def info(name, infos=()):
    n = name.encode()
    return (struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos))
            + b"".join(struct.pack(">H", i) for i in infos))


def meta(name, queries):
    n = name.encode()
    out = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        out += struct.pack(">I", len(q)) + q.encode()
    return out


def req(cmd, off=0, length=0, flags=0, cookie=1, data=b""):
    return struct.pack(">IHHQQI", 0x25609513, flags, cmd, cookie, off,
                       length) + data


FLAGS = struct.pack(">I", 3)
qemu = (FLAGS + opt(8) + opt(10, meta("", ["base:allocation"]))
        + opt(7, info("", [3]))
        + req(7, 0, 1 << 20, 8) + req(1, 4096, 512, 1, 2, b"\xaa" * 512)
        + req(6, 0, 65536, 3, 3) + req(3, cookie=4) + req(0, 0, 8192, 0, 5)
        + req(4, 65536, 65536, 0, 6) + req(5, 0, 65536, 0, 7) + req(2))
nbdinfo = (FLAGS + opt(3) + opt(6, info("", [3, 1, 2])) + opt(9, meta("", []))
           + opt(9, meta("", ["base:", "qemu:"])) + opt(2))
nbdcopy = (FLAGS + opt(8) + opt(10, meta("", ["base:allocation",
                                              "qemu:allocation-depth"]))
           + opt(7, info("", []))
           + req(7, 0, 1 << 20, 0) + req(0, 0, 65536, 4, 2)
           + req(6, 0, 65536, 16, 3) + req(2))
hostile = (FLAGS + opt(99, b"xyz") + opt(5) + opt(11) + opt(6, b"\0\0\0\x10ab")
           + opt(7, info("nosuch")) + opt(1, b"")
           + req(0, 1 << 20, 4096) + req(42) + req(1, 0, 64, 0xffff, 9, b"z" * 64)
           + req(0, 0, 1 << 26) + b"\x25\x60\x95\x14garbage")
oldstyle = struct.pack(">I", 1) + opt(1, b"") + req(0, 0, 512) + req(2)
# "TLS!" makes the target require TLS: options before STARTTLS, then
# STARTTLS and the start of a TLS ClientHello (cut short).
tls_before = (b"TLS!" + FLAGS + opt(3) + opt(8) + opt(7, info("", [3]))
              + opt(5, b"x"))
tls_hello = (b"TLS!" + FLAGS + opt(6, info("")) + opt(5)
             + bytes.fromhex("160301002a0100002603") + b"\0" * 32)

for name, data in [("qemu-img", qemu), ("nbdinfo", nbdinfo),
                   ("nbdcopy", nbdcopy), ("hostile", hostile),
                   ("export-name", oldstyle), ("tls-before", tls_before),
                   ("tls-hello", tls_hello)]:
    with open(name + ".bin", "wb") as f:
        f.write(data)
