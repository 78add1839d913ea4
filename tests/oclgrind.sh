#!/usr/bin/env bash
# oclgrind.sh TEST_OPS
#
# The op-by-op kernel checks (test_ops --quick: small shapes, no CLBlast GEMMs) on Oclgrind's
# strict simulator, with its checks on: out-of-bounds global/local/private accesses and
# work-group divergence at barriers (always on), data races (--data-races) and OpenCL API misuse
# (--check-api). Any diagnostic fails the test, except the single CL_BUILD_PROGRAM_FAILURE that
# the deliberate build-failure check provokes, and the races Oclgrind sees in retention_step
# between one group's columns of o and the group norm that the head's last group applies to
# them: the atomic count that orders them (retention.cl) is not a synchronisation Oclgrind
# models across groups. Only races between exactly those two lines are let through, and
# counted. test_ops must also pass on the simulator.
#
# Uninitialized reads (--uninitialized) are checked too (OCLGRIND_UNINITIALIZED=0: not), with two
# workarounds for Oclgrind 21.10's Uninitialized plugin (neither is fixed upstream as of 26.03):
# - it aborts on LLVM's `freeze` instruction (OCLGRIND FATAL ERROR, results lost), which the
#   default -Oz build emits: kernels are built with -cl-opt-disable (OCLGRIND_BUILD_OPTIONS),
#   with the program cache off so that no cached -Oz binary is used instead;
# - every host store (clEnqueueWriteBuffer, FillBuffer, CopyBuffer, ...) replaces the shadow of
#   the whole destination buffer with one the size of that store, clean only if the store starts
#   at offset 0 of the root buffer (hostMemoryStore -> ShadowMemory::allocate). A fill (one
#   store per pattern), a write at an offset or into a sub-buffer, or a second partial write
#   leaves most of the buffer "uninitialized" however it was initialised, and kernel stores
#   beyond the shadow's new size are lost: thousands of false reports (retention_sigma reading
#   the chunk states that retention_scan wrote into a zero-filled buffer, for one). A preloaded
#   shim stores the root buffer again whole at offset 0 after each such host store (same data),
#   so every buffer the host has stored to counts as initialised, as it is: rt_buffer_alloc and
#   the guarded test buffers fill each buffer whole when they create it. Uninitialised private
#   and local memory, and buffers the host never stored to, are tracked as before.
#
# Installs Debian's oclgrind when missing (as scripts/setup.sh installs packages); exits 77
# (skipped) only when it cannot be installed.
set -u
test_ops=$1
if ! command -v oclgrind >/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  if ! { [ -z "$sudo" ] || command -v sudo >/dev/null; } ||
     ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
           --no-install-recommends oclgrind; } >/dev/null 2>&1 ||
     ! command -v oclgrind >/dev/null; then
    echo "oclgrind is not installed and cannot be installed: skipped"
    exit 77
  fi
fi
oclgrind --version | head -2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checks=(--data-races --check-api)
wrap=()
if [ "${OCLGRIND_UNINITIALIZED:-1}" != 0 ]; then
  checks+=(--uninitialized)
  export OCLGRIND_BUILD_OPTIONS="${OCLGRIND_BUILD_OPTIONS:+$OCLGRIND_BUILD_OPTIONS }-cl-opt-disable"
  export RETNET_PROGRAM_CACHE=0
  if ! ${CC:-cc} -shared -fPIC -o "$work/reclean.so" -x c - -ldl <<'EOF'
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <dlfcn.h>
#include <stdlib.h>
#define REAL(f) static __typeof__(&f) real; if (!real) real = (__typeof__(&f))dlsym(RTLD_NEXT, #f)
/* Stores m's root buffer whole at offset 0, with its current contents, unless [offset,
 * offset + bytes) of m already is the whole root buffer. */
static void reclean(cl_command_queue q, cl_mem m, size_t offset, size_t bytes) {
    REAL(clEnqueueWriteBuffer);
    cl_mem parent = NULL;
    size_t base = 0, size = 0;
    clGetMemObjectInfo(m, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, NULL);
    if (parent) clGetMemObjectInfo(m, CL_MEM_OFFSET, sizeof base, &base, NULL);
    cl_mem root = parent ? parent : m;
    clGetMemObjectInfo(root, CL_MEM_SIZE, sizeof size, &size, NULL);
    if (base + offset == 0 && bytes == size) return;
    void *data = malloc(size);
    if (data && clFinish(q) == CL_SUCCESS &&
        clEnqueueReadBuffer(q, root, CL_TRUE, 0, size, data, 0, NULL, NULL) == CL_SUCCESS)
        real(q, root, CL_TRUE, 0, size, data, 0, NULL, NULL);
    free(data);
}
cl_int clEnqueueWriteBuffer(cl_command_queue q, cl_mem m, cl_bool blocking, size_t offset,
                            size_t bytes, const void *p, cl_uint n, const cl_event *w, cl_event *e) {
    REAL(clEnqueueWriteBuffer);
    cl_int rc = real(q, m, blocking, offset, bytes, p, n, w, e);
    if (rc == CL_SUCCESS) reclean(q, m, offset, bytes);
    return rc;
}
cl_int clEnqueueFillBuffer(cl_command_queue q, cl_mem m, const void *p, size_t p_size,
                           size_t offset, size_t bytes, cl_uint n, const cl_event *w, cl_event *e) {
    REAL(clEnqueueFillBuffer);
    cl_int rc = real(q, m, p, p_size, offset, bytes, n, w, e);
    if (rc == CL_SUCCESS) reclean(q, m, 1, 0);  /* a fill is one store per pattern */
    return rc;
}
cl_int clEnqueueCopyBuffer(cl_command_queue q, cl_mem s, cl_mem d, size_t s_offset,
                           size_t d_offset, size_t bytes, cl_uint n, const cl_event *w, cl_event *e) {
    REAL(clEnqueueCopyBuffer);
    cl_int rc = real(q, s, d, s_offset, d_offset, bytes, n, w, e);
    if (rc == CL_SUCCESS) reclean(q, d, d_offset, bytes);
    return rc;
}
cl_int clEnqueueWriteBufferRect(cl_command_queue q, cl_mem m, cl_bool blocking, const size_t *bo,
                                const size_t *ho, const size_t *r, size_t brp, size_t bsp,
                                size_t hrp, size_t hsp, const void *p, cl_uint n,
                                const cl_event *w, cl_event *e) {
    REAL(clEnqueueWriteBufferRect);
    cl_int rc = real(q, m, blocking, bo, ho, r, brp, bsp, hrp, hsp, p, n, w, e);
    if (rc == CL_SUCCESS) reclean(q, m, 1, 0);
    return rc;
}
cl_int clEnqueueCopyBufferRect(cl_command_queue q, cl_mem s, cl_mem d, const size_t *so,
                               const size_t *dso, const size_t *r, size_t srp, size_t ssp,
                               size_t drp, size_t dsp, cl_uint n, const cl_event *w, cl_event *e) {
    REAL(clEnqueueCopyBufferRect);
    cl_int rc = real(q, s, d, so, dso, r, srp, ssp, drp, dsp, n, w, e);
    if (rc == CL_SUCCESS) reclean(q, d, 1, 0);
    return rc;
}
EOF
  then
    echo "FAIL: cannot build the host-store shim for --uninitialized"
    exit 1
  fi
  # Ahead of liboclgrind-rt, which the oclgrind launcher puts in LD_PRELOAD: test_ops calls the
  # shim, the shim calls Oclgrind (RTLD_NEXT).
  wrap=(sh -c 'LD_PRELOAD="$0${LD_PRELOAD:+:$LD_PRELOAD}" exec "$@"' "$work/reclean.so")
fi
echo "oclgrind ${checks[*]} (+ out-of-bounds, barrier divergence) $test_ops --quick"
start=$(date +%s)
oclgrind "${checks[@]}" --max-errors 100000 --log "$work/oclgrind.log" "${wrap[@]}" "$test_ops" --quick \
  > "$work/out.txt" 2>&1
rc=$?
echo "  test_ops exit status $rc in $(( $(date +%s) - start )) s: $(tail -1 "$work/out.txt")"
grep -E "^(device|  work-group)" "$work/out.txt"
checked=$(grep -cE " pass$" "$work/out.txt")

# Kernel diagnostics go to the --log file, API errors (--check-api) to stderr: one diagnostic per
# blank-line-separated record that carries Oclgrind's markers.
awk -v RS= -v out="$work/unexpected.txt" -v ordered="$work/ordered" '
  !/(^|\n)Oclgrind( -|:)|\tKernel: |\tEntity: |\tFunction: / { next }
  /Function: clBuildProgram/ && /CL_BUILD_PROGRAM_FAILURE/ && expected < 1 { expected++; next }
  /data race/ && /Kernel: retention_step\n/ && /\(o \+ \(size_t\)bh \* RN_DV\)\)\[c\] = sum;/ &&
    /held\[j\] = i < RN_DV \? o\[base \+ i\] : 0\.0f;|  y\[base \+ i\] = v;/ { step++; next }
  { n++; print $0 "\n" > out }
  END { print n + 0; print step + 0 > ordered }' "$work/oclgrind.log" "$work/out.txt" > "$work/count"
count=$(cat "$work/count")
echo "  races ordered by retention_step's count (not modelled by Oclgrind): $(cat "$work/ordered")"
fail=0
if [ "$rc" -ne 0 ]; then
  echo "FAIL: test_ops failed on the simulator"; grep -E "FAIL" "$work/out.txt" | head -20; fail=1
fi
if [ "$count" -ne 0 ]; then
  echo "FAIL: $count Oclgrind diagnostic(s):"; head -60 "$work/unexpected.txt"; fail=1
fi
[ $fail -eq 0 ] && echo "ok: $checked checks passed under Oclgrind, 0 diagnostics"
exit $fail
