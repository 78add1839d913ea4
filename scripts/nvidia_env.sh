# Sourced by the scripts that run on the NVIDIA machine: unpacks the runtime
# libraries that travel in .gpu/debs and points the ICD loader at NVIDIA's OpenCL driver only.
mkdir -p /tmp/r /tmp/icd
for f in .gpu/debs/*.deb; do dpkg -x "$f" /tmp/r; done
echo /usr/local/nvidia/lib64/libnvidia-opencl.so.1 > /tmp/icd/nvidia.icd
# Added to, not replaced: a build run through RETNET=... keeps the library path it was given.
export OCL_ICD_VENDORS=/tmp/icd LD_LIBRARY_PATH=/tmp/r/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export RETNET_CACHE_DIR=/tmp/retnet-cache
