// rotation.cl: torchscale's theta shift of q and k.
//
// Interleaved pairs (2i, 2i+1) of each head are rotated by phi = pos * angle[2i]: a rotation by
// +phi of the complex number x[2i] + i x[2i+1] (GPT-J style, not NeoX's half split). The angle
// is the fp32 product, as torch computes it, so that long positions keep torch's phase.
// k is scaled by dk^-0.5 before rotation (scale = 1 for q). One work-item per pair:
// global (H * dk / 2, n). In place on x [n, H * dk].

__kernel void theta_shift(__global float *x, __global const float *angle,  // angle [dk]
                          int width, int dk, int pos0, float scale) {
    const int pair = get_global_id(0);
    const int t = get_global_id(1);
    const int j = 2 * pair;
    const float phi = (float)(pos0 + t) * angle[j % dk];
    const float c = cos(phi), s = sin(phi);
    __global float *row = x + (size_t)t * width;
    const float x0 = row[j] * scale, x1 = row[j + 1] * scale;
    row[j] = x0 * c - x1 * s;
    row[j + 1] = x1 * c + x0 * s;
}
