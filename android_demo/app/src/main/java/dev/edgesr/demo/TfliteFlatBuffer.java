package dev.edgesr.demo;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * Bounds-checked reads of a TFLite model's FlatBuffer ({@code tensorflow/compiler/mlir/lite/schema/schema.fbs}),
 * shared by {@link TfliteMetadata} and {@link TfliteShape}. Plain Java, no dependency.
 *
 * <p>FlatBuffers encoding (little-endian): the file starts with the root table's uoffset (u32)
 * and the identifier "TFL3"; a table starts with an soffset (i32) back to its vtable; the
 * vtable holds u16 byte sizes (vtable, table) then one u16 offset per field (0 = absent); a
 * reference field holds a u32 offset from its own position to a vector or string, which
 * starts with a u32 length. Every read is checked against the buffer's limit: a malformed file
 * raises {@link IllegalArgumentException}, never an out-of-bounds read.
 */
final class TfliteFlatBuffer {
    final ByteBuffer buf;

    /** A little-endian view of {@code model} from position 0 (the caller's buffer is not moved). */
    TfliteFlatBuffer(ByteBuffer model) {
        buf = model.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        buf.position(0);
        if (buf.limit() < 8 || !"TFL3".equals(new String(bytes(4, 4), StandardCharsets.US_ASCII))) {
            throw new IllegalArgumentException("not a TFLite model (no 'TFL3' identifier)");
        }
    }

    /** Position of the root table ({@code Model}). */
    int root() { return deref(0); }

    /** Absolute position of a table's field {@code id}, or 0 when the field is absent. */
    int field(int table, int id) {
        int vtable = table - i32(table);
        int vtableSize = u16(vtable);
        int slot = 4 + 2 * id;
        if (slot + 2 > vtableSize) return 0;
        int offset = u16(vtable + slot);
        return offset == 0 ? 0 : table + offset;
    }

    /** Follows the u32 offset stored at {@code pos} (relative to {@code pos}). */
    int deref(int pos) {
        long target = (long) pos + (u32(pos) & 0xffffffffL);
        check(target, 4);
        return (int) target;
    }

    /** The vector of 4-byte elements (tables, strings, int32) that field {@code id} of {@code table} points at, or 0. */
    int vector(int table, int id) {
        int f = field(table, id);
        if (f == 0) return 0;
        int v = deref(f);
        check(v + 4L, 4L * u32(v));
        return v;
    }

    /** Element {@code i} of a vector of tables (or strings): its position. */
    int tableAt(int vector, int i) {
        if (i < 0 || i >= u32(vector)) throw new IllegalArgumentException("index " + i + " beyond a vector of " + u32(vector));
        return deref(vector + 4 + 4 * i);
    }

    /** Element {@code i} of a vector of 32-bit integers. */
    int intAt(int vector, int i) {
        if (i < 0 || i >= u32(vector)) throw new IllegalArgumentException("index " + i + " beyond a vector of " + u32(vector));
        return i32(vector + 4 + 4 * i);
    }

    /** A vector of 32-bit integers as an array (null for an absent field). */
    int[] ints(int table, int id) {
        int v = vector(table, id);
        if (v == 0) return null;
        int[] out = new int[u32(v)];
        for (int i = 0; i < out.length; i++) out[i] = i32(v + 4 + 4 * i);
        return out;
    }

    String string(int pos) {
        return new String(bytes(pos + 4, u32(pos)), StandardCharsets.UTF_8);
    }

    byte[] bytes(int pos, int length) {
        if (length < 0) throw new IllegalArgumentException("negative length at " + pos);
        check(pos, length);
        byte[] out = new byte[length];
        for (int i = 0; i < length; i++) out[i] = buf.get(pos + i);
        return out;
    }

    void check(long pos, long length) {
        if (pos < 0 || length < 0 || pos + length > buf.limit()) {
            throw new IllegalArgumentException("malformed TFLite model: read of " + length + " bytes at " + pos + " beyond " + buf.limit());
        }
    }

    int u16(int pos) { check(pos, 2); return buf.getShort(pos) & 0xffff; }
    int i32(int pos) { check(pos, 4); return buf.getInt(pos); }
    int u32(int pos) {
        check(pos, 4);
        int v = buf.getInt(pos);
        if (v < 0) throw new IllegalArgumentException("malformed TFLite model: length or offset above 2 GiB at " + pos);
        return v;
    }
    long u64(int pos) { check(pos, 8); return buf.getLong(pos); }
}
