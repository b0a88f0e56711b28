/*
 * edgesr LUT engine: portable C99, no dependencies, integer arithmetic only.
 *
 * Two lookup-table super-resolution methods, bit-exact with edgesr's numpy and PyTorch
 * engines (lut_baking/engine_numpy.py is the readable reference of every formula below).
 *
 * ---------------------------------------------------------------------------------------
 * SR-LUT (Jo & Kim, "Practical Single-Image Super-Resolution Using Look-Up Table", CVPR 2021)
 * ---------------------------------------------------------------------------------------
 * bits k (sampling interval q = 2^k, 1 <= k <= 8): each input is sampled at L = 2^(8-k) + 1
 * levels 0, q, 2q, ..., 256. lut: L^4 entries x scale*scale int8, row-major
 * [index][dy*scale+dx], index = ((ia*L + ib)*L + ic)*L + id for the 2x2 receptive field
 *     a = (y, x), b = (y, x+1), c = (y+1, x), d = (y+1, x+1).
 * 4-D simplex (tetrahedral) interpolation of one rotation: MSB i = p >> k, fraction
 * f = p & (q-1). With the fractions sorted in decreasing order f1 >= f2 >= f3 >= f4 (ties:
 * a before b before c before d), the 5 vertices are v0 = (ia,ib,ic,id) and v_j = v_{j-1}
 * + the unit step of the j-th sorted dimension; weights (q-f1, f1-f2, f2-f3, f3-f4, f4),
 * all >= 0, summing to q.  acc = sum_j w_j * lut[v_j][t]  (|acc| <= 127*q <= 32512).
 * Rotation ensemble: the image is rotated by r*90 degrees counter-clockwise (r = 0..3,
 * numpy.rot90), reflect-padded by one pixel at the bottom and right (reflect: index -1 ->
 * 1, n -> n-2; a side of length 1 repeats its pixel), interpolated, rotated back.
 * T = sum over the 4 rotations of acc (|T| <= 130048, int32).
 * Output (the authors' sum(127*clamp(net, -1, 1))/255, clipped, 8-bit):
 *     out = T < 0 ? 0 : min(255, (T + q/2) >> k)          rounding: half up
 *
 * ---------------------------------------------------------------------------------------
 * SPLUT x4 (after Ma et al., "Learning Series-Parallel Lookup Tables for Efficient Image
 * Super-Resolution", ECCV 2022; edgesr's documented variant, see docs/lut.md)
 * ---------------------------------------------------------------------------------------
 * Every LUT has 16^4 = 65536 entries x C int8 values, layout [index][c], index =
 * ((i0*16 + i1)*16 + i2)*16 + i3 with each i in 0..15 (direct indexing, no interpolation).
 * Two parallel branches: MSB (p = x >> 4) and LSB (p = x & 15).  Per branch:
 *   stage 0, spatial LUT (C = 4): i = (p(y,x), p(y,x+1), p(y+1,x), p(y+1,x+1)), reflect
 *     padding as above; F = S[i][0..3], int8 features in [-127, 127].
 *   series stages s = 0..m (m = variant: 0 = S, 1 = M, 2 = L); stage s < m is a mixing
 *     stage (C = 4), stage m is the final stage (C = 16). Neighbour offset o = -1 for even
 *     s, +1 for odd s (so the receptive field stays centred). Levels l_c = (F_c + 128) >> 4
 *     (0..15). Four LUTs, in this order: H0, H1, V0, V1. Hg reads (l_2g(y,x), l_2g+1(y,x),
 *     l_2g(y,x+o), l_2g+1(y,x+o)); Vg reads the same at (y+o, x) instead of (y, x+o)
 *     (reflect padding on both sides). Tc = H0[c] + H1[c] + V0[c] + V1[c] (|Tc| <= 508).
 *     mixing: F_c <- clamp(F_c + floor((T_c + 2) / 4), -127, 127)   (average of the 4 + residual)
 *     final:  R_t = T_t, t = dy*4 + dx.
 * Output: HR(4y+dy, 4x+dx) = clamp(x(y,x) + floor((R_msb_t + R_lsb_t + 2) / 4), 0, 255).
 * luts (n_luts = 2 * (5 + 4*m) pointers), per branch MSB then LSB:
 *     spatial (65536 x 4), then for each mixing stage H0, H1, V0, V1 (65536 x 4 each),
 *     then the final stage H0, H1, V0, V1 (65536 x 16 each).
 *
 * All functions: images row-major uint8, h >= 1, w >= 1, out (h*scale) x (w*scale).
 * Return 0 on success, nonzero on bad arguments (null pointer, size, bits, scale, variant).
 * Thread-safe (no global state); callers may split an image into row bands themselves.
 */
#ifndef EDGESR_LUT_ENGINE_H
#define EDGESR_LUT_ENGINE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Upscale one 8-bit channel (h x w, row-major) by SR-LUT with the rotation ensemble.
   lut: int8, (2^(8-bits)+1)^4 entries x scale*scale, layout [index][dy*scale+dx].
   out: (h*scale) x (w*scale) uint8, row-major. Returns 0 on success, nonzero on bad arguments. */
int edgesr_srlut_upscale(const int8_t *lut, int bits, int scale, const uint8_t *in, int h, int w, uint8_t *out);

/* SPLUT x4 on one channel; luts = the bundle's arrays in the order documented above
   (n_luts = 2 * (5 + 4 * variant)); variant = number of mixing stages (0 = S, 1 = M, 2 = L).
   out: (4h) x (4w) uint8. Returns 0 on success, nonzero on bad arguments. */
int edgesr_splut_upscale(const int8_t *const *luts, int n_luts, int variant, const uint8_t *in, int h, int w, uint8_t *out);

/* Version of this API (1). */
int edgesr_lut_engine_version(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGESR_LUT_ENGINE_H */
