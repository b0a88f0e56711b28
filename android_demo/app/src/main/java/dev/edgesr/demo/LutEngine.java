package dev.edgesr.demo;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The portable C LUT engine of edgesr ({@code lut_baking/lut_engine.c}) seen from Java.
 *
 * <p>Plain Java on purpose: no Android API, so the same class is compiled and called on the
 * host JVM by {@code tests/test_android_jni.py}, which checks its output against edgesr's
 * Python engines bit for bit. The native library is {@code libedgesr_lut.so}, built by the
 * app's CMake ({@code app/src/main/cpp/CMakeLists.txt}) or by that test.
 *
 * <p>All buffers are <em>direct</em> {@link ByteBuffer}s: the C code reads and writes them in
 * place (no copy, no pinning of Java arrays during a long call). Every size is checked in C
 * against the engine's contract before the engine runs; a bad size throws
 * {@link IllegalArgumentException}, an engine failure {@link IllegalStateException}.
 *
 * <p>Images are one channel, uint8, row-major: {@code in} is h x w, {@code out} is
 * (h * scale) x (w * scale). Colour images go through the engine once per plane (see
 * {@link ColorPipeline}).
 */
public final class LutEngine {
    private LutEngine() {}

    /** Loads {@code libedgesr_lut.so} (from the APK, or from {@code java.library.path} on the host). */
    public static void load() {
        System.loadLibrary("edgesr_lut");
    }

    /**
     * SR-LUT: 4-D simplex interpolation in a table sampled every 2^bits levels, with the
     * rotation ensemble (see {@code lut_baking/lut_engine.h}).
     *
     * @param lut   int8 table, (2^(8-bits)+1)^4 x scale*scale entries, direct buffer
     * @param bits  sampling interval 2^bits (4 for the usual 17-level tables)
     * @param scale upscaling factor
     * @param in    h x w uint8 pixels, direct buffer
     * @param out   (h*scale) x (w*scale) uint8 pixels, direct buffer (written)
     */
    public static native void srlutUpscale(ByteBuffer lut, int bits, int scale, ByteBuffer in, int h, int w, ByteBuffer out);

    /**
     * SPLUT: the series-parallel tables of one model variant, directly indexed (no interpolation).
     *
     * @param luts    int8 tables in the engine's order, each a direct buffer
     * @param variant the engine's variant id (S, M, L; see {@code lut_baking/lut_engine.h})
     * @param in      h x w uint8 pixels, direct buffer
     * @param out     (h*4) x (w*4) uint8 pixels, direct buffer (written)
     */
    public static native void splutUpscale(ByteBuffer[] luts, int variant, ByteBuffer in, int h, int w, ByteBuffer out);

    /** A direct buffer holding a copy of {@code bytes} (for tables and images read from files or assets). */
    public static ByteBuffer direct(byte[] bytes) {
        ByteBuffer b = ByteBuffer.allocateDirect(bytes.length).order(ByteOrder.nativeOrder());
        b.put(bytes).rewind();
        return b;
    }

    /** Upscales one uint8 plane with an SR-LUT table; returns (h*scale) x (w*scale) bytes. */
    public static byte[] srlut(ByteBuffer lut, int bits, int scale, byte[] plane, int h, int w) {
        ByteBuffer out = ByteBuffer.allocateDirect(h * scale * w * scale);
        srlutUpscale(lut, bits, scale, direct(plane), h, w, out);
        byte[] result = new byte[out.capacity()];
        out.get(result);
        return result;
    }

    /** Upscales one uint8 plane with SPLUT tables (x4); returns (h*4) x (w*4) bytes. */
    public static byte[] splut(ByteBuffer[] luts, int variant, byte[] plane, int h, int w) {
        ByteBuffer out = ByteBuffer.allocateDirect(h * 4 * w * 4);
        splutUpscale(luts, variant, direct(plane), h, w, out);
        byte[] result = new byte[out.capacity()];
        out.get(result);
        return result;
    }
}
