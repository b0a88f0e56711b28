package dev.edgesr.demo;

/**
 * edgesr's colour handling ({@code edgesr/color.py}, {@code edgesr/evaluate.py}
 * {@code model_input} / {@code run_upscaler} / {@code upscale_photo}), line for line in Java.
 *
 * <p>Plain Java (no Android API) so that {@code tests/test_android_jni.py} runs it on the host
 * JVM against the Python path on a real photo. Java's double arithmetic is IEEE 754 with no
 * fused multiply-add (strict since Java 17, and on Android's ART), so the host result is the
 * phone's result.
 *
 * <p>The path, for a model whose contract colour is {@code "y"}:
 * <ol>
 *   <li>Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 in double (BT.601 studio range,
 *       MATLAB {@code rgb2ycbcr}), not rounded; the network sees (float) (Y / 255).</li>
 *   <li>The network's float output v becomes an 8-bit Y: rint(clip(v, 0, 1) * 255)
 *       (round half to even, as NumPy's {@code np.round}).</li>
 *   <li>Cb and Cr (double, unrounded) are upscaled by MATLAB's bicubic {@code imresize}
 *       (Keys a = -0.5, symmetric border, rows first) in double.</li>
 *   <li>Y, Cb, Cr go back to RGB with the inverse of the BT.601 matrix; each channel is
 *       clipped and rounded half to even to uint8.</li>
 * </ol>
 * For {@code "luma_full"} the network sees (Y - 16) * 255/219 / 255 and its 8-bit output L
 * becomes Y = L * 219/255 + 16 before step 4. For {@code "rgb"} each channel / 255 is the input
 * and the rounded output is the pixel; no colour conversion at all.
 *
 * <p>Where this can differ from Python by one 8-bit level: NumPy may evaluate the 3-term dot
 * products and the bicubic sums with fused multiply-add or another summation order (BLAS,
 * SIMD einsum); the doubles then differ in the last bit and a value within 1e-13 of a .5
 * rounding boundary rounds the other way. The host test counts such pixels (0 on its
 * photo); the network input Y/255 as float32 is checked identical.
 */
public final class ColorPipeline {
    private ColorPipeline() {}

    // MATLAB rgb2ycbcr rows divided by 255, computed as NumPy does (array / 255.0): same doubles.
    private static final double YR = 65.481 / 255.0, YG = 128.553 / 255.0, YB = 24.966 / 255.0;
    private static final double BR = -37.797 / 255.0, BG = -74.203 / 255.0, BB = 112.0 / 255.0;
    private static final double RR = 112.0 / 255.0, RG = -93.786 / 255.0, RB = -18.214 / 255.0;
    // np.linalg.inv of that matrix (as printed by NumPy with repr, so the same doubles).
    private static final double[][] INV = {
        {1.1643835616438356, 3.011243973294133e-07, 1.5960268873357042},
        {1.1643835616438356, -0.3917625399414501, -0.8129682921622053},
        {1.1643835616438358, 2.0172326395564593, 3.054261745313201e-06},
    };

    /** Upscales a one-channel float plane (h x w, model space) to (s*h) x (s*w): a network or LUT. */
    public interface PlaneUpscaler {
        float[] upscale(float[] x, int h, int w);
    }

    private static int r(int argb) { return (argb >> 16) & 0xff; }
    private static int g(int argb) { return (argb >> 8) & 0xff; }
    private static int b(int argb) { return argb & 0xff; }

    /** BT.601 studio-range Y (16..235, unrounded double) of each ARGB pixel. */
    public static double[] studioY(int[] argb) {
        double[] y = new double[argb.length];
        for (int i = 0; i < argb.length; i++) {
            int p = argb[i];
            y[i] = r(p) * YR + g(p) * YG + b(p) * YB + 16.0;
        }
        return y;
    }

    /** The network input of a contract: {@code "y"} -> Y/255, {@code "luma_full"} -> (Y-16)*255/219/255, float32. */
    public static float[] modelInput(int[] argb, String color) {
        double[] y = studioY(argb);
        float[] x = new float[y.length];
        boolean full = "luma_full".equals(color);
        for (int i = 0; i < y.length; i++) {
            double v = full ? (y[i] - 16.0) * (255.0 / 219.0) : y[i];
            x[i] = (float) (v / 255.0);
        }
        return x;
    }

    /** One channel (0 = R, 1 = G, 2 = B) / 255 as float32: the input of per-channel RGB models. */
    public static float[] channel(int[] argb, int c) {
        float[] x = new float[argb.length];
        int shift = 16 - 8 * c;
        for (int i = 0; i < argb.length; i++) {
            x[i] = (float) (((argb[i] >> shift) & 0xff) / 255.0);
        }
        return x;
    }

    /** A model output value in [0, 1] (float) to its 8-bit level: rint(clip(v, 0, 1) * 255), half to even. */
    public static double to8bit(float v) {
        double d = v;
        d = d < 0.0 ? 0.0 : (d > 1.0 ? 1.0 : d); // NaN stays NaN, as np.clip leaves it
        return Math.rint(d * 255.0);
    }

    /**
     * Model-space values to the 8-bit levels a LUT engine takes, as lut_baking's LutUpscaler:
     * {@code np.round(np.clip(x, 0, 1) * 255)} on float32 (a float multiply, then half to even).
     */
    public static byte[] toLevels(float[] x) {
        byte[] v = new byte[x.length];
        for (int i = 0; i < x.length; i++) {
            float c = x[i] < 0f ? 0f : (x[i] > 1f ? 1f : x[i]);
            v[i] = (byte) (int) Math.rint(c * 255f);
        }
        return v;
    }

    /** 8-bit levels back to model space: level / 255 in float32, as LutUpscaler returns them. */
    public static float[] fromLevels(byte[] v) {
        float[] x = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            x[i] = (v[i] & 0xff) / 255f;
        }
        return x;
    }

    /** Keys' cubic convolution kernel, a = -0.5 (MATLAB {@code cubic}), evaluated as edgesr does. */
    static double cubic(double x) {
        double a = Math.abs(x), a2 = a * a, a3 = a2 * a;
        if (a <= 1.0) return 1.5 * a3 - 2.5 * a2 + 1.0;
        if (a <= 2.0) return -0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0;
        return 0.0;
    }

    /**
     * MATLAB {@code imresize} along one axis for an integer upscale s: for each output index,
     * 6 source indices (folded by the symmetric border) and normalized weights.
     * Mirrors {@code edgesr.imresize.contributions} (the zero-weight taps it drops add 0 here).
     */
    static void contributions(int inLen, int s, int[][] idx, double[][] wts) {
        int outLen = inLen * s;
        double scale = s;
        for (int o = 0; o < outLen; o++) {
            double u = (o + 1) / scale + 0.5 * (1.0 - 1.0 / scale);
            double left = Math.floor(u - 2.0);
            double sum = 0.0;
            double[] w = new double[6];
            int[] ix = new int[6];
            for (int p = 0; p < 6; p++) {
                double index = left + p;
                w[p] = cubic(u - index);
                sum += w[p];
                int k = Math.floorMod((int) index - 1, 2 * inLen); // 0-based, period 2n
                ix[p] = k < inLen ? k : 2 * inLen - 1 - k;           // mirror: edge pixel repeated
            }
            for (int p = 0; p < 6; p++) {
                w[p] = w[p] / sum;
            }
            idx[o] = ix;
            wts[o] = w;
        }
    }

    /** MATLAB bicubic upscale of a double plane (h x w) by an integer s, rows first, in double. */
    public static double[] bicubicUpscale(double[] plane, int h, int w, int s) {
        int oh = h * s, ow = w * s;
        int[][] ri = new int[oh][];
        double[][] rw = new double[oh][];
        contributions(h, s, ri, rw);
        double[] rows = new double[oh * w]; // pass 1: along H
        for (int o = 0; o < oh; o++) {
            for (int x = 0; x < w; x++) {
                double acc = 0.0;
                for (int p = 0; p < 6; p++) {
                    acc += rw[o][p] * plane[ri[o][p] * w + x];
                }
                rows[o * w + x] = acc;
            }
        }
        int[][] ci = new int[ow][];
        double[][] cw = new double[ow][];
        contributions(w, s, ci, cw);
        double[] out = new double[oh * ow]; // pass 2: along W
        for (int y = 0; y < oh; y++) {
            for (int o = 0; o < ow; o++) {
                double acc = 0.0;
                for (int p = 0; p < 6; p++) {
                    acc += cw[o][p] * rows[y * w + ci[o][p]];
                }
                out[y * ow + o] = acc;
            }
        }
        return out;
    }

    private static int clipRound(double v) {
        double r = Math.rint(v); // half to even, as np.round
        return r < 0.0 ? 0 : (r > 255.0 ? 255 : (int) r);
    }

    /**
     * A photo through a luma model, as {@code edgesr.evaluate.upscale_photo}: returns (s*h) x (s*w)
     * opaque ARGB pixels. {@code color} is the contract's colour, {@code "y"} or {@code "luma_full"}.
     */
    public static int[] upscaleLuma(int[] argb, int h, int w, int s, String color, PlaneUpscaler net) {
        float[] out = net.upscale(modelInput(argb, color), h, w);
        if (out.length != h * s * w * s) {
            throw new IllegalStateException("model returned " + out.length + " values, expected " + (h * s * w * s));
        }
        double[] cb = new double[argb.length], cr = new double[argb.length];
        for (int i = 0; i < argb.length; i++) {
            int p = argb[i];
            cb[i] = r(p) * BR + g(p) * BG + b(p) * BB + 128.0;
            cr[i] = r(p) * RR + g(p) * RG + b(p) * RB + 128.0;
        }
        double[] cbUp = bicubicUpscale(cb, h, w, s), crUp = bicubicUpscale(cr, h, w, s);
        boolean full = "luma_full".equals(color);
        int[] rgb = new int[out.length];
        for (int i = 0; i < out.length; i++) {
            double y = to8bit(out[i]);
            if (full) y = y * (219.0 / 255.0) + 16.0;
            double dy = y - 16.0, db = cbUp[i] - 128.0, dr = crUp[i] - 128.0;
            int rr = clipRound(dy * INV[0][0] + db * INV[0][1] + dr * INV[0][2]);
            int gg = clipRound(dy * INV[1][0] + db * INV[1][1] + dr * INV[1][2]);
            int bb = clipRound(dy * INV[2][0] + db * INV[2][1] + dr * INV[2][2]);
            rgb[i] = 0xff000000 | (rr << 16) | (gg << 8) | bb;
        }
        return rgb;
    }

    /** A photo through a per-channel RGB model (SR-LUT's convention): each channel upscaled alone. */
    public static int[] upscaleRgb(int[] argb, int h, int w, int s, PlaneUpscaler net) {
        int n = h * s * w * s;
        int[] rgb = new int[n];
        for (int c = 0; c < 3; c++) {
            float[] out = net.upscale(channel(argb, c), h, w);
            if (out.length != n) {
                throw new IllegalStateException("model returned " + out.length + " values, expected " + n);
            }
            int shift = 16 - 8 * c;
            for (int i = 0; i < n; i++) {
                rgb[i] |= ((int) to8bit(out[i])) << shift;
            }
        }
        for (int i = 0; i < n; i++) rgb[i] |= 0xff000000;
        return rgb;
    }
}
