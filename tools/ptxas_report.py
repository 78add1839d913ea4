#!/usr/bin/env python3
"""Registers, stack and spills of every kernel NVIDIA's OpenCL driver compiled for retnet-cl.

    python3 tools/ptxas_report.py CACHE_DIR [PTXAS] [ARCH]

CACHE_DIR is retnet's program cache ($RETNET_CACHE_DIR) after a run on an NVIDIA device: each
file holds the program's binary as the driver returned it, which on NVIDIA is PTX text. The
PTX goes through `ptxas -v` (PTXAS, default `ptxas` on the PATH; ARCH default sm_90), which
prints per kernel what the driver's own compilation would give: registers (occupancy), the
stack frame (arrays the compiler could not keep in registers) and spills. No profiler reaches
OpenCL kernels on NVIDIA; this is the next best look inside them.

Cache file layout (runtime/rt_program.c): "RNCLBIN1", u64 version, u64 key length, key,
u64 binary length, binary; integers little-endian.
"""
import os
import re
import struct
import subprocess
import sys
import tempfile


def cached_programs(cache_dir):
    for name in sorted(os.listdir(cache_dir)):
        if not name.endswith(".clbin"):
            continue
        with open(os.path.join(cache_dir, name), "rb") as f:
            data = f.read()
        if data[:8] != b"RNCLBIN1" or len(data) < 24:
            continue
        key_len = struct.unpack_from("<Q", data, 16)[0]
        at = 24 + key_len
        if at + 8 > len(data):
            continue
        bin_len = struct.unpack_from("<Q", data, at)[0]
        binary = data[at + 8:at + 8 + bin_len].rstrip(b"\0")
        if b".entry" in binary:  # PTX; other drivers' binaries are not text
            yield name[:-len(".clbin")], binary


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) > 1 else 2
    cache_dir = sys.argv[1]
    ptxas = sys.argv[2] if len(sys.argv) > 2 else "ptxas"
    arch = sys.argv[3] if len(sys.argv) > 3 else "sm_90"
    found = False
    for name, ptx in cached_programs(cache_dir):
        found = True
        # The driver may write a newer PTX ISA than a given ptxas reads; the kernels use
        # nothing past 8.0's instructions.
        ptx = re.sub(rb"^\.version .*$", b".version 8.0", ptx, count=1, flags=re.M)
        with tempfile.NamedTemporaryFile(suffix=".ptx") as f:
            f.write(ptx)
            f.flush()
            run = subprocess.run([ptxas, "-arch=" + arch, "-O3", "-v", "-o", os.devnull, f.name],
                                 capture_output=True, text=True)
        print("## program", name)
        kernel = None
        for line in (run.stdout + run.stderr).splitlines():
            m = re.search(r"Function properties for (\w+)", line)
            if m:
                kernel = m.group(1)
            m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
            if m and kernel:
                stack, spill_st, spill_ld = m.groups()
            m = re.search(r"Used (\d+) registers", line)
            if m and kernel:
                print(f"{kernel:24} {m.group(1):>4} registers, stack {stack} B, spills {spill_st} / {spill_ld} B")
                kernel = None
            if "error" in line:
                print(line)
    if not found:
        print(f"no PTX in {cache_dir} (run retnet on an NVIDIA device with RETNET_CACHE_DIR={cache_dir} first)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
