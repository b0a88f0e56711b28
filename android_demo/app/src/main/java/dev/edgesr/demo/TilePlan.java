package dev.edgesr.demo;

/**
 * Tiled upscaling of a photo, as {@code edgesr upscale} does it ({@code edgesr/core/tiling.py}):
 * the same pixels as the whole photo in one piece, in memory bounded by the tile.
 *
 * <p>The photo is cut into tiles of {@code tile} x {@code tile} LR pixels, row by row. Each tile
 * is upscaled inside a <em>window</em>: the tile plus a halo of {@code max(receptiveField / 2, 2)}
 * LR pixels (the model's receptive field, carried by the asset manifest; at least 2 for the
 * bicubic chroma, whose Keys kernel reaches 2 LR pixels). Every window has the same shape, so one
 * interpreter prepared for that shape (and one delegate applied to it) serves every tile; a tile
 * at the photo's edge takes its window inward, so the model pads at the same edge as on the whole
 * photo. Only the tile's own {@code s*tile} x {@code s*tile} outputs are kept. Every step of the
 * pipeline is local (convolutions, per-pixel colour, rounding), so the stitched photo equals the
 * whole photo upscaled at once.
 *
 * <p>The plan ({@link #of}) equals {@code edgesr.core.tiling.tile_plan} for any photo, tile and
 * receptive field, including its rule that a window holds more than
 * {@value #MIN_WINDOW_PIXELS} - 1 pixels (a PyTorch kernel-selection detail there; here it only
 * makes windows a little larger). Plain Java (no Android API): {@code tests/test_android_tiling.py}
 * compares the plan with Python's and stitches real upscaled windows on the host JVM.
 */
public final class TilePlan {
    /** Tile side in LR pixels (edgesr.core.tiling.DEFAULT_TILE). */
    public static final int DEFAULT_TILE = 256;
    /** Smallest tile side (edgesr.core.tiling.MIN_TILE). */
    public static final int MIN_TILE = 16;
    /** LR pixels either side that MATLAB bicubic reads (edgesr.core.tiling.BICUBIC_HALO). */
    public static final int BICUBIC_HALO = 2;
    /** Every window holds at least this many pixels, or is the whole photo (edgesr.core.tiling.MIN_WINDOW_PIXELS). */
    public static final int MIN_WINDOW_PIXELS = 20481;
    /** A window side that alone exceeds MIN_WINDOW_PIXELS (edgesr.core.tiling.SQUARE_WINDOW). */
    public static final int SQUARE_WINDOW = 144;

    /** One tile {@code [y0, y1) x [x0, x1)} (LR pixels, end exclusive) and its window's top-left corner. */
    public static final class Tile {
        public final int y0, y1, x0, x1, windowY, windowX;

        Tile(int y0, int y1, int x0, int x1, int windowY, int windowX) {
            this.y0 = y0;
            this.y1 = y1;
            this.x0 = x0;
            this.x1 = x1;
            this.windowY = windowY;
            this.windowX = windowX;
        }
    }

    /** Upscales one window of opaque ARGB pixels (h x w) to (s*h) x (s*w): colour pipeline and model. */
    public interface WindowUpscaler {
        int[] upscale(int[] argb, int h, int w);
    }

    public final int height, width, tile, halo, windowHeight, windowWidth;
    public final Tile[] tiles;

    private TilePlan(int height, int width, int tile, int halo, int windowHeight, int windowWidth, Tile[] tiles) {
        this.height = height;
        this.width = width;
        this.tile = tile;
        this.halo = halo;
        this.windowHeight = windowHeight;
        this.windowWidth = windowWidth;
        this.tiles = tiles;
    }

    /** LR pixels of context a tile needs: {@code max(receptiveField / 2, 2)} (integer division). */
    public static int haloOf(int receptiveField) {
        if (receptiveField < 1) throw new IllegalArgumentException("receptive field must be >= 1, got " + receptiveField);
        return Math.max(receptiveField / 2, BICUBIC_HALO);
    }

    /**
     * The plan for a {@code height} x {@code width} photo.
     *
     * @param receptiveField side, in LR pixels, of the input window one output pixel depends on
     *                       (the manifest's {@code tiling.receptive_field})
     * @throws IllegalArgumentException a size below 1, a tile below {@link #MIN_TILE}, a receptive field below 1
     */
    public static TilePlan of(int height, int width, int tile, int receptiveField) {
        if (height < 1 || width < 1) throw new IllegalArgumentException("photo size must be >= 1 x 1, got " + height + "x" + width);
        if (tile < MIN_TILE) throw new IllegalArgumentException("tile size must be >= " + MIN_TILE + ", got " + tile);
        int halo = haloOf(receptiveField);
        int side = Math.max(tile + 2 * halo, SQUARE_WINDOW);
        int winH = Math.min(height, side), winW = Math.min(width, side);
        if ((long) winH * winW < MIN_WINDOW_PIXELS) { // a thin photo: widen along its long side
            winW = Math.min(width, Math.max(winW, ceilDiv(MIN_WINDOW_PIXELS, winH)));
            winH = Math.min(height, Math.max(winH, ceilDiv(MIN_WINDOW_PIXELS, winW)));
        }
        int rows = ceilDiv(height, tile), cols = ceilDiv(width, tile);
        Tile[] tiles = new Tile[rows * cols];
        int k = 0;
        for (int y0 = 0; y0 < height; y0 += tile) {
            for (int x0 = 0; x0 < width; x0 += tile) {
                tiles[k++] = new Tile(y0, Math.min(y0 + tile, height), x0, Math.min(x0 + tile, width),
                                      window(y0, winH, height, halo), window(x0, winW, width, halo));
            }
        }
        return new TilePlan(height, width, tile, halo, winH, winW, tiles);
    }

    /** Start of the window of {@code size} pixels that holds [start - halo, start + tile + halo) inside [0, length). */
    private static int window(int start, int size, int length, int halo) {
        return Math.max(0, Math.min(start - halo, length - size));
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    /** The window of {@code t} cut out of a {@link #height} x {@link #width} ARGB photo (row-major). */
    public int[] window(int[] argb, Tile t) {
        int[] out = new int[windowHeight * windowWidth];
        for (int y = 0; y < windowHeight; y++) {
            System.arraycopy(argb, (t.windowY + y) * width + t.windowX, out, y * windowWidth, windowWidth);
        }
        return out;
    }

    /**
     * Copies tile {@code t}'s own outputs from its upscaled window {@code piece}
     * ((s*windowHeight) x (s*windowWidth)) into {@code out} ((s*height) x (s*width)).
     */
    public void place(int[] out, int s, Tile t, int[] piece) {
        int pieceW = s * windowWidth, outW = s * width;
        int oy = s * (t.y0 - t.windowY), ox = s * (t.x0 - t.windowX), rowLen = s * (t.x1 - t.x0);
        for (int y = 0; y < s * (t.y1 - t.y0); y++) {
            System.arraycopy(piece, (oy + y) * pieceW + ox, out, (s * t.y0 + y) * outW + s * t.x0, rowLen);
        }
    }

    /**
     * The whole photo upscaled tile by tile: (s*height) x (s*width) ARGB, equal to
     * {@code up.upscale(argb, height, width)} when {@code up} is local within the halo.
     *
     * @throws IllegalStateException {@code up} returned a window of the wrong size
     */
    public int[] upscale(int[] argb, int s, WindowUpscaler up) {
        if (argb.length != height * width) {
            throw new IllegalArgumentException("photo has " + argb.length + " pixels, the plan " + height + "x" + width);
        }
        int[] out = new int[s * height * s * width];
        for (Tile t : tiles) {
            int[] piece = up.upscale(window(argb, t), windowHeight, windowWidth);
            if (piece.length != s * windowHeight * s * windowWidth) {
                throw new IllegalStateException("window upscaled to " + piece.length + " pixels, expected "
                                                + (s * windowHeight * s * windowWidth));
            }
            place(out, s, t, piece);
        }
        return out;
    }
}
