/*
 * edgesr LUT engine: SR-LUT and SPLUT x4 in portable C99 integer arithmetic.
 * The specification (formulas, layouts, rounding) is in lut_engine.h; the readable
 * reference is lut_baking/engine_numpy.py. Both must stay bit-exact (tests/test_lut_engines.py).
 */
#include "lut_engine.h"

#include <stddef.h>
#include <stdlib.h>

#define MAX_SCALE 4

int edgesr_lut_engine_version(void) { return 1; }

/* Reflect an index into [0, n): -1 -> 1, n -> n-2 (a length-1 side repeats its pixel). */
static int reflect_index(int i, int n) {
    if (i < 0) return n > 1 ? 1 : 0;
    if (i >= n) return n > 1 ? n - 2 : 0;
    return i;
}

/* Original-image steps for moving right / down in the image rotated by r*90 degrees
   counter-clockwise (numpy.rot90): rotated R[i][j] = img[j][w-1-i] for r = 1, etc. */
static const int RIGHT_DY[4] = {0, 1, 0, -1}, RIGHT_DX[4] = {1, 0, -1, 0};
static const int DOWN_DY[4] = {1, 0, -1, 0}, DOWN_DX[4] = {0, -1, 0, 1};

/* Compare-exchange for sorting (fraction, stride) pairs in decreasing fraction order. */
static inline void sort_pair(int *fi, long *si, int *fj, long *sj) {
    int swap = *fi < *fj, f = *fi;
    long st = *si;
    *fi = swap ? *fj : f;
    *fj = swap ? f : *fj;
    *si = swap ? *sj : st;
    *sj = swap ? st : *sj;
}

/* q times the simplex-interpolated LUT row at one 2x2 receptive field (pixels a, b, c, d):
   tmp[t] = sum_j w_j * lut[v_j][t]. The fractions are sorted in decreasing order with a
   5-comparator network, carrying each dimension's index stride along; tied fractions may
   come out in any order, which does not change the result (the vertex between two tied
   fractions gets weight 0). ss is a literal at each call site so the row loop vectorizes. */
static inline void srlut_interpolate(const int8_t *lut, int bits, const long *stride, int ss,
                                     int pa, int pb, int pc, int pd, int16_t *tmp) {
    const int q = 1 << bits;
    int f0 = pa & (q - 1), f1 = pb & (q - 1), f2 = pc & (q - 1), f3 = pd & (q - 1), t;
    long s0 = stride[0], s1 = stride[1], s2 = stride[2], s3 = stride[3];
    long v0 = (pa >> bits) * s0 + (pb >> bits) * s1 + (pc >> bits) * s2 + (pd >> bits) * s3;
    int16_t w0, w1, w2, w3, w4; /* weights >= 0, sum q; |sum_j w_j * lut| <= 127 * q <= 32512 */
    const int8_t *r0, *r1, *r2, *r3, *r4;
    sort_pair(&f0, &s0, &f1, &s1);
    sort_pair(&f2, &s2, &f3, &s3);
    sort_pair(&f0, &s0, &f2, &s2);
    sort_pair(&f1, &s1, &f3, &s3);
    sort_pair(&f1, &s1, &f2, &s2);
    w0 = (int16_t)(q - f0); w1 = (int16_t)(f0 - f1); w2 = (int16_t)(f1 - f2); w3 = (int16_t)(f2 - f3); w4 = (int16_t)f3;
    r0 = lut + v0 * ss;
    r1 = r0 + s0 * ss;
    r2 = r1 + s1 * ss;
    r3 = r2 + s2 * ss;
    r4 = r3 + s3 * ss;
    for (t = 0; t < ss; t++) tmp[t] = (int16_t)(w0 * r0[t] + w1 * r1[t] + w2 * r2[t] + w3 * r3[t] + w4 * r4[t]);
}

/* One LR pixel (y, x): the rotation ensemble, then rounding and the s x s output block.
   Rotation r's sub-pixel (p, q) lands at (dy, dx) = r0: (p, q); r1: (q, s-1-p);
   r2: (s-1-p, s-1-q); r3: (s-1-q, p), so tmp[r] is read at the inverse positions below. */
static inline void srlut_pixel(const int8_t *lut, int bits, int scale, int ss, const long *stride,
                               const uint8_t *in, int h, int w, int y, int x, int interior, uint8_t *out) {
    int16_t tmp[4][MAX_SCALE * MAX_SCALE];
    int r, dy, dx;
    for (r = 0; r < 4; r++) {
        /* the rotated image's right and down neighbours, in original coordinates */
        int ry = RIGHT_DY[r], rx = RIGHT_DX[r], dwy = DOWN_DY[r], dwx = DOWN_DX[r];
        int pa, pb, pc, pd;
        if (interior) {
            const uint8_t *p = in + (long)y * w + x;
            pa = p[0];
            pb = p[(long)ry * w + rx];
            pc = p[(long)dwy * w + dwx];
            pd = p[(long)(ry + dwy) * w + rx + dwx];
        } else {
            pa = in[(long)y * w + x];
            pb = in[(long)reflect_index(y + ry, h) * w + reflect_index(x + rx, w)];
            pc = in[(long)reflect_index(y + dwy, h) * w + reflect_index(x + dwx, w)];
            pd = in[(long)reflect_index(y + ry + dwy, h) * w + reflect_index(x + rx + dwx, w)];
        }
        srlut_interpolate(lut, bits, stride, ss, pa, pb, pc, pd, tmp[r]);
    }
    for (dy = 0; dy < scale; dy++) {
        uint8_t *o = out + ((long)y * scale + dy) * ((long)w * scale) + (long)x * scale;
        for (dx = 0; dx < scale; dx++) {
            int32_t v = (int32_t)tmp[0][dy * scale + dx] + tmp[1][(scale - 1 - dx) * scale + dy] +
                        tmp[2][(scale - 1 - dy) * scale + scale - 1 - dx] + tmp[3][dx * scale + scale - 1 - dy];
            v = v < 0 ? 0 : (v + (1 << (bits - 1))) >> bits; /* round half up */
            o[dx] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

static void srlut_image(const int8_t *lut, int bits, int scale, int ss, const uint8_t *in, int h, int w, uint8_t *out) {
    long stride[4];
    int levels = (256 >> bits) + 1, y, x;
    stride[0] = (long)levels * levels * levels;
    stride[1] = (long)levels * levels;
    stride[2] = levels;
    stride[3] = 1;
    for (y = 0; y < h; y++) {
        int inner_row = y >= 1 && y + 1 < h;
        for (x = 0; x < w; x++) {
            int interior = inner_row && x >= 1 && x + 1 < w;
            srlut_pixel(lut, bits, scale, ss, stride, in, h, w, y, x, interior, out);
        }
    }
}

int edgesr_srlut_upscale(const int8_t *lut, int bits, int scale, const uint8_t *in, int h, int w, uint8_t *out) {
    if (lut == NULL || in == NULL || out == NULL) return 1;
    if (bits < 1 || bits > 8 || scale < 1 || scale > MAX_SCALE || h < 1 || w < 1) return 2;
    switch (scale) { /* literal block sizes let the compiler specialise the row loop */
    case 1: srlut_image(lut, bits, 1, 1, in, h, w, out); break;
    case 2: srlut_image(lut, bits, 2, 4, in, h, w, out); break;
    case 3: srlut_image(lut, bits, 3, 9, in, h, w, out); break;
    default: srlut_image(lut, bits, 4, 16, in, h, w, out); break;
    }
    return 0;
}

/* ------------------------------------------------------------------------------ SPLUT */

#define SPLUT_ENTRIES 65536L

/* floor((t + 2) / 4) for |t| <= 1016, without relying on signed shifts or division rounding. */
static int32_t round_quarter(int32_t t) { return (t + 2 + 1024) / 4 - 256; }

static int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* One branch on the part image p (h x w, values 0..15); writes R (h*w x 16, int32). */
static void splut_branch(const int8_t *const *luts, int variant, const uint8_t *p, int h, int w,
                         int8_t *feat, uint8_t *level, int32_t *result) {
    const int8_t *spatial = luts[0];
    int y, x, c, s;
    long n = (long)h * w;
    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            int y1 = reflect_index(y + 1, h), x1 = reflect_index(x + 1, w);
            long idx = ((long)(p[(long)y * w + x] * 16 + p[(long)y * w + x1]) * 16 + p[(long)y1 * w + x]) * 16 +
                       p[(long)y1 * w + x1];
            for (c = 0; c < 4; c++) feat[((long)y * w + x) * 4 + c] = spatial[idx * 4 + c];
        }
    }
    for (s = 0; s <= variant; s++) {
        const int8_t *const *stage = luts + 1 + 4 * s;
        int o = (s % 2 == 0) ? -1 : 1, channels = (s == variant) ? 16 : 4;
        long i;
        for (i = 0; i < n * 4; i++) level[i] = (uint8_t)((feat[i] + 128) >> 4);
        for (y = 0; y < h; y++) {
            for (x = 0; x < w; x++) {
                const uint8_t *here = level + ((long)y * w + x) * 4;
                const uint8_t *hn = level + ((long)y * w + reflect_index(x + o, w)) * 4;
                const uint8_t *vn = level + ((long)reflect_index(y + o, h) * w + x) * 4;
                long ih0 = ((long)(here[0] * 16 + here[1]) * 16 + hn[0]) * 16 + hn[1];
                long ih1 = ((long)(here[2] * 16 + here[3]) * 16 + hn[2]) * 16 + hn[3];
                long iv0 = ((long)(here[0] * 16 + here[1]) * 16 + vn[0]) * 16 + vn[1];
                long iv1 = ((long)(here[2] * 16 + here[3]) * 16 + vn[2]) * 16 + vn[3];
                for (c = 0; c < channels; c++) {
                    int32_t t = stage[0][ih0 * channels + c] + stage[1][ih1 * channels + c] +
                                stage[2][iv0 * channels + c] + stage[3][iv1 * channels + c];
                    if (s < variant) {
                        int8_t *f = feat + ((long)y * w + x) * 4 + c;
                        *f = (int8_t)clamp_i32(*f + round_quarter(t), -127, 127);
                    } else {
                        result[((long)y * w + x) * 16 + c] = t;
                    }
                }
            }
        }
        /* a mixing stage updates feat in place only after every pixel has read its levels,
           which were computed above from the previous features: in-place is safe */
    }
}

int edgesr_splut_upscale(const int8_t *const *luts, int n_luts, int variant, const uint8_t *in, int h, int w, uint8_t *out) {
    int b, y, x, t;
    long n, i;
    if (luts == NULL || in == NULL || out == NULL) return 1;
    if (variant < 0 || variant > 8 || n_luts != 2 * (5 + 4 * variant) || h < 1 || w < 1) return 2;
    for (i = 0; i < n_luts; i++)
        if (luts[i] == NULL) return 1;
    n = (long)h * w;
    {
        /* work memory: 4 int8 features, 4 levels, 1 part value and 2 x 16 int32 sums per pixel */
        int8_t *feat = (int8_t *)malloc((size_t)n * 4);
        uint8_t *level = (uint8_t *)malloc((size_t)n * 4);
        uint8_t *part = (uint8_t *)malloc((size_t)n);
        int32_t *result = (int32_t *)malloc((size_t)n * 2 * 16 * sizeof(int32_t));
        if (feat == NULL || level == NULL || part == NULL || result == NULL) {
            free(feat); free(level); free(part); free(result);
            return 3;
        }
        for (b = 0; b < 2; b++) {
            for (i = 0; i < n; i++) part[i] = (uint8_t)(b == 0 ? in[i] >> 4 : in[i] & 15);
            splut_branch(luts + b * (5 + 4 * variant), variant, part, h, w, feat, level, result + b * n * 16);
        }
        for (y = 0; y < h; y++) {
            for (x = 0; x < w; x++) {
                long k = (long)y * w + x;
                for (t = 0; t < 16; t++) {
                    int32_t v = in[k] + round_quarter(result[k * 16 + t] + result[n * 16 + k * 16 + t]);
                    out[((long)y * 4 + t / 4) * ((long)w * 4) + (long)x * 4 + t % 4] = (uint8_t)clamp_i32(v, 0, 255);
                }
            }
        }
        free(feat); free(level); free(part); free(result);
    }
    return 0;
}
