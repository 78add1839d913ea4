// rotation.cl: rotary position of q and k, in the two layouts the checkpoint families use.
//
// torchscale and syncdoth rotate interleaved pairs (2i, 2i+1) by phi = pos * angle[2i] (GPT-J
// style; the angle table holds each theta twice). fla rotates NeoX's half-split pairs
// (i, i + dk/2) by phi = pos * angle[i] (the table holds theta_i at i and i + dk/2). Either way
// the pair (x0, x1) becomes (x0 cos - x1 sin, x1 cos + x0 sin). The angle is the fp32 product,
// as torch computes it, so long positions keep torch's phase. `scale` multiplies first (k's
// dk^-0.5; 1 for q). One work-item per pair: global (heads * dk / 2, n). In place on
// x [n, width], width = heads * dk.

__kernel void theta_shift(__global float *x, __global const float *angle,  // angle [dk]
                          int width, int dk, int pos0, __global const int *positions, int per_row,
                          float scale, int half_split) {
    const int pair = get_global_id(0);
    const int t = get_global_id(1);
    const int head = pair / (dk / 2), i = pair % (dk / 2);
    const int j0 = head * dk + (half_split ? i : 2 * i);
    const int j1 = half_split ? j0 + dk / 2 : j0 + 1;
    const float phi = (float)(per_row ? positions[t] : pos0 + t) * angle[half_split ? i : 2 * i];
    const float c = cos(phi), s = sin(phi);
    __global float *row = x + (size_t)t * width;
    const float x0 = row[j0] * scale, x1 = row[j1] * scale;
    row[j0] = x0 * c - x1 * s;
    row[j1] = x1 * c + x0 * s;
}
