import dev.edgesr.demo.ColorPipeline;
import dev.edgesr.demo.InterpreterPerShape;
import dev.edgesr.demo.LutEngine;
import dev.edgesr.demo.TfliteMetadata;
import dev.edgesr.demo.TfliteShape;
import dev.edgesr.demo.TilePlan;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Host-JVM driver for the app's plain-Java classes, used by {@code tests/test_android_jni.py}.
 *
 * <p>Not part of the app. Files are raw little-endian arrays, row-major:
 * <pre>
 *   srlut LUT.bin BITS SCALE IN.bin H W OUT.bin       uint8 plane through LutEngine.srlut
 *   splut VARIANT IN.bin H W OUT.bin LUT0.bin ...     uint8 plane through LutEngine.splut
 *   color RGB.bin H W S COLOR NET.bin X.bin OUT.bin   ColorPipeline.upscaleLuma with a fixed
 *                                                     network output NET (float32, sH x sW);
 *                                                     writes the model input X (float32) and
 *                                                     the RGB result (uint8, sH x sW x 3)
 *   lutphoto LUT.bin BITS SCALE COLOR RGB.bin H W OUT.bin
 *                                                     a photo through an SR-LUT as the app does it
 *                                                     (LutRunner: ColorPipeline.toLevels, engine,
 *                                                     fromLevels; upscaleRgb for COLOR "rgb", else
 *                                                     upscaleLuma); writes RGB uint8
 *   errors                                            the JNI argument checks throw
 *   metadata MODEL.tflite NAME OUT.txt                TfliteMetadata.read: writes the entry's
 *                                                     text (exit 3 when the model has none)
 *   plans IN.txt OUT.txt                              TilePlan.of for each line "H W TILE RF" of IN;
 *                                                     writes per plan "WIN_H WIN_W N" then N lines
 *                                                     "Y0 Y1 X0 X1 WY0 WX0" (or "error MESSAGE")
 *   stitch H W TILE RF S PIECES.bin OUT.bin           TilePlan.upscale whose windows come from
 *                                                     PIECES (RGB uint8, one upscaled window after
 *                                                     the other in plan order); writes RGB uint8
 *   tiledlut LUT.bin BITS SCALE COLOR RGB.bin H W TILE RF OUT.bin
 *                                                     lutphoto, tile by tile through TilePlan
 *   reshape MODEL.tflite D0,D1,.. OUT.tflite          TfliteShape.withInputShape (input 0); prints
 *                                                     the stored shape and signature before; exit 3
 *                                                     and "error MESSAGE" when refused
 *   pershape H,W H,W ...                              InterpreterPerShape with a recording factory:
 *                                                     prints "build H,W" / "close H,W" / "use H,W"
 * </pre>
 */
public final class HostDriver {
    public static void main(String[] a) throws IOException {
        switch (a[0]) {
            case "srlut": {
                LutEngine.load();
                ByteBuffer lut = LutEngine.direct(Files.readAllBytes(Path.of(a[1])));
                int h = Integer.parseInt(a[5]), w = Integer.parseInt(a[6]);
                byte[] out = LutEngine.srlut(lut, Integer.parseInt(a[2]), Integer.parseInt(a[3]), Files.readAllBytes(Path.of(a[4])), h, w);
                Files.write(Path.of(a[7]), out);
                break;
            }
            case "splut": {
                LutEngine.load();
                ByteBuffer[] luts = new ByteBuffer[a.length - 6];
                for (int i = 0; i < luts.length; i++) luts[i] = LutEngine.direct(Files.readAllBytes(Path.of(a[6 + i])));
                int h = Integer.parseInt(a[3]), w = Integer.parseInt(a[4]);
                byte[] out = LutEngine.splut(luts, Integer.parseInt(a[1]), Files.readAllBytes(Path.of(a[2])), h, w);
                Files.write(Path.of(a[5]), out);
                break;
            }
            case "color": color(a); break;
            case "lutphoto": lutPhoto(a); break;
            case "errors": errors(); break;
            case "plans": plans(a); break;
            case "stitch": stitch(a); break;
            case "tiledlut": tiledLut(a); break;
            case "reshape": reshape(a); break;
            case "pershape": perShape(a); break;
            case "metadata": {
                String text = TfliteMetadata.read(ByteBuffer.wrap(Files.readAllBytes(Path.of(a[1]))), a[2]);
                if (text == null) System.exit(3);
                Files.write(Path.of(a[3]), text.getBytes(java.nio.charset.StandardCharsets.UTF_8));
                break;
            }
            default: throw new IllegalArgumentException("unknown mode " + a[0]);
        }
    }

    private static void color(String[] a) throws IOException {
        int h = Integer.parseInt(a[2]), w = Integer.parseInt(a[3]), s = Integer.parseInt(a[4]);
        int[] argb = readRgb(Path.of(a[1]), h, w);
        float[] net = readFloats(Path.of(a[6]));
        float[][] seen = new float[1][];
        int[] out = ColorPipeline.upscaleLuma(argb, h, w, s, a[5], (x, hh, ww) -> { seen[0] = x; return net; });
        writeFloats(Path.of(a[7]), seen[0]);
        writeRgb(Path.of(a[8]), out);
    }

    /** The SR-LUT plane upscaler of args LUT_FILE BITS SCALE (a[1..3]), as the app builds it. */
    private static ColorPipeline.PlaneUpscaler lutNet(String[] a) throws IOException {
        LutEngine.load();
        ByteBuffer lut = LutEngine.direct(Files.readAllBytes(Path.of(a[1])));
        int bits = Integer.parseInt(a[2]), s = Integer.parseInt(a[3]);
        return (x, hh, ww) -> ColorPipeline.fromLevels(LutEngine.srlut(lut, bits, s, ColorPipeline.toLevels(x), hh, ww));
    }

    private static void lutPhoto(String[] a) throws IOException {
        int s = Integer.parseInt(a[3]);
        int h = Integer.parseInt(a[6]), w = Integer.parseInt(a[7]);
        int[] argb = readRgb(Path.of(a[5]), h, w);
        ColorPipeline.PlaneUpscaler net = lutNet(a);
        int[] out = "rgb".equals(a[4]) ? ColorPipeline.upscaleRgb(argb, h, w, s, net) : ColorPipeline.upscaleLuma(argb, h, w, s, a[4], net);
        writeRgb(Path.of(a[8]), out);
    }

    private static void plans(String[] a) throws IOException {
        StringBuilder out = new StringBuilder();
        for (String line : Files.readAllLines(Path.of(a[1]))) {
            if (line.isBlank()) continue;
            String[] f = line.trim().split("\\s+");
            try {
                TilePlan p = TilePlan.of(Integer.parseInt(f[0]), Integer.parseInt(f[1]), Integer.parseInt(f[2]), Integer.parseInt(f[3]));
                out.append(p.windowHeight).append(' ').append(p.windowWidth).append(' ').append(p.tiles.length).append('\n');
                for (TilePlan.Tile t : p.tiles) {
                    out.append(t.y0).append(' ').append(t.y1).append(' ').append(t.x0).append(' ').append(t.x1).append(' ')
                       .append(t.windowY).append(' ').append(t.windowX).append('\n');
                }
            } catch (IllegalArgumentException e) {
                out.append("error ").append(e.getMessage()).append('\n');
            }
        }
        Files.write(Path.of(a[2]), out.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8));
    }

    private static void stitch(String[] a) throws IOException {
        int h = Integer.parseInt(a[1]), w = Integer.parseInt(a[2]), s = Integer.parseInt(a[5]);
        TilePlan plan = TilePlan.of(h, w, Integer.parseInt(a[3]), Integer.parseInt(a[4]));
        int wh = s * plan.windowHeight, ww = s * plan.windowWidth;
        byte[] pieces = Files.readAllBytes(Path.of(a[6]));
        int[] next = {0};
        int[] out = plan.upscale(new int[h * w], s, (argb, hh, ww2) -> {
            int[] piece = new int[wh * ww];
            for (int i = 0; i < piece.length; i++) {
                int o = 3 * (next[0] * piece.length + i);
                piece[i] = 0xff000000 | (pieces[o] & 0xff) << 16 | (pieces[o + 1] & 0xff) << 8 | (pieces[o + 2] & 0xff);
            }
            next[0]++;
            return piece;
        });
        writeRgb(Path.of(a[7]), out);
    }

    private static void tiledLut(String[] a) throws IOException {
        int s = Integer.parseInt(a[3]);
        int h = Integer.parseInt(a[6]), w = Integer.parseInt(a[7]);
        int[] argb = readRgb(Path.of(a[5]), h, w);
        ColorPipeline.PlaneUpscaler net = lutNet(a);
        TilePlan plan = TilePlan.of(h, w, Integer.parseInt(a[8]), Integer.parseInt(a[9]));
        int[] out = plan.upscale(argb, s, (win, hh, ww) -> "rgb".equals(a[4])
            ? ColorPipeline.upscaleRgb(win, hh, ww, s, net) : ColorPipeline.upscaleLuma(win, hh, ww, s, a[4], net));
        writeRgb(Path.of(a[10]), out);
    }

    private static int[] dims(String text) {
        String[] f = text.split(",");
        int[] d = new int[f.length];
        for (int i = 0; i < f.length; i++) d[i] = Integer.parseInt(f[i]);
        return d;
    }

    private static String joined(int[] d) {
        if (d == null) return "none";
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < d.length; i++) b.append(i == 0 ? "" : ",").append(d[i]);
        return b.toString();
    }

    private static void reshape(String[] a) throws IOException {
        ByteBuffer model = ByteBuffer.wrap(Files.readAllBytes(Path.of(a[1])));
        try {
            System.out.println("shape " + joined(TfliteShape.inputShape(model, 0)) + " signature " + joined(TfliteShape.inputShapeSignature(model, 0)));
            ByteBuffer out = TfliteShape.withInputShape(model, 0, dims(a[2]));
            byte[] bytes = new byte[out.remaining()];
            out.get(bytes);
            Files.write(Path.of(a[3]), bytes);
        } catch (IllegalArgumentException e) {
            System.out.println("error " + e.getMessage());
            System.exit(3);
        }
    }

    private static void perShape(String[] a) {
        final class Session implements AutoCloseable {
            final int[] shape;
            Session(int[] shape) { this.shape = shape; System.out.println("build " + joined(shape)); }
            @Override public void close() { System.out.println("close " + joined(shape)); }
        }
        try (InterpreterPerShape<Session> sessions = new InterpreterPerShape<>(Session::new)) {
            for (int i = 1; i < a.length; i++) System.out.println("use " + joined(sessions.get(dims(a[i])).shape));
            System.out.println("builds " + sessions.builds());
        }
    }

    private static int[] readRgb(Path p, int h, int w) throws IOException {
        byte[] rgb = Files.readAllBytes(p);
        int[] argb = new int[h * w];
        for (int i = 0; i < argb.length; i++) {
            argb[i] = 0xff000000 | (rgb[3 * i] & 0xff) << 16 | (rgb[3 * i + 1] & 0xff) << 8 | (rgb[3 * i + 2] & 0xff);
        }
        return argb;
    }

    private static void writeRgb(Path p, int[] out) throws IOException {
        byte[] bytes = new byte[out.length * 3];
        for (int i = 0; i < out.length; i++) {
            bytes[3 * i] = (byte) (out[i] >> 16);
            bytes[3 * i + 1] = (byte) (out[i] >> 8);
            bytes[3 * i + 2] = (byte) out[i];
        }
        Files.write(p, bytes);
    }

    /** Each bad call must throw IllegalArgumentException with a message; prints one line per case. */
    private static void errors() {
        LutEngine.load();
        ByteBuffer lut = ByteBuffer.allocateDirect(17 * 17 * 17 * 17 * 4);
        ByteBuffer in = ByteBuffer.allocateDirect(6), out = ByteBuffer.allocateDirect(24);
        Runnable[] cases = {
            () -> LutEngine.srlutUpscale(null, 4, 2, in, 2, 3, out),
            () -> LutEngine.srlutUpscale(ByteBuffer.allocate(17 * 17 * 17 * 17 * 4), 4, 2, in, 2, 3, out),
            () -> LutEngine.srlutUpscale(ByteBuffer.allocateDirect(100), 4, 2, in, 2, 3, out),
            () -> LutEngine.srlutUpscale(lut, 4, 2, in, 2, 3, ByteBuffer.allocateDirect(23)),
            () -> LutEngine.srlutUpscale(lut, 4, 2, in, 3, 3, out),
            () -> LutEngine.srlutUpscale(lut, 0, 2, in, 2, 3, out),
            () -> LutEngine.srlutUpscale(lut, 4, 2, in, 0, 3, out),
            () -> LutEngine.splutUpscale(new ByteBuffer[0], 0, in, 2, 3, out),
            () -> LutEngine.splutUpscale(new ByteBuffer[10], 0, in, 2, 3, out),
            () -> LutEngine.splutUpscale(new ByteBuffer[10], 9, in, 2, 3, out),
            () -> LutEngine.splutUpscale(new ByteBuffer[10], 3, in, 2, 3, out),
        };
        for (int i = 0; i < cases.length; i++) {
            try {
                cases[i].run();
                System.out.println("case " + i + ": NO EXCEPTION");
            } catch (IllegalArgumentException e) {
                System.out.println("case " + i + ": IllegalArgumentException: " + e.getMessage());
            }
        }
    }

    private static float[] readFloats(Path p) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(p)).order(ByteOrder.LITTLE_ENDIAN);
        float[] f = new float[b.remaining() / 4];
        b.asFloatBuffer().get(f);
        return f;
    }

    private static void writeFloats(Path p, float[] f) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(f.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(f);
        Files.write(p, b.array());
    }
}
