package dev.edgesr.demo;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * Reads a named metadata entry of a TFLite model file: the edgesr contract travels inside the
 * {@code .tflite} (written by {@code edgesr export}, {@code edgesr.converters.tflite.embed_metadata}),
 * so the app needs no sidecar.
 *
 * <p>Plain Java with no dependency (the host tests run it on the JVM). It walks the FlatBuffer
 * of TensorFlow Lite's schema ({@code tensorflow/compiler/mlir/lite/schema/schema.fbs}):
 * <pre>
 *   table Model    { version:uint; operator_codes; subgraphs; description:string;
 *                    buffers:[Buffer] (field 4); metadata_buffer:[int]; metadata:[Metadata] (field 6); ... }
 *   table Metadata { name:string (field 0); buffer:uint (field 1); }
 *   table Buffer   { data:[ubyte] (field 0); offset:ulong (field 1); size:ulong (field 2); }
 * </pre>
 * FlatBuffers encoding (little-endian): the file starts with the root table's uoffset (u32)
 * and the identifier "TFL3"; a table starts with an soffset (i32) back to its vtable; the
 * vtable holds u16 byte sizes (vtable, table) then one u16 offset per field (0 = absent); a
 * reference field holds a u32 offset from its own position to a vector or string, which
 * starts with a u32 length. {@code Buffer.offset/size} (models over 2 GB) point at data after
 * the FlatBuffer, from the start of the file.
 *
 * <p>Every read is bounds-checked: a malformed file raises {@link IllegalArgumentException},
 * never an out-of-bounds read.
 */
public final class TfliteMetadata {
    /** The metadata name under which edgesr embeds its JSON (edgesr.core.contract.KEY). */
    public static final String EDGESR = "edgesr";

    private static final int MODEL_BUFFERS = 4;
    private static final int MODEL_METADATA = 6;
    private static final int METADATA_NAME = 0;
    private static final int METADATA_BUFFER = 1;
    private static final int BUFFER_DATA = 0;
    private static final int BUFFER_OFFSET = 1;
    private static final int BUFFER_SIZE = 2;

    private final ByteBuffer buf;

    private TfliteMetadata(ByteBuffer model) {
        buf = model.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        buf.position(0);
    }

    /**
     * The UTF-8 text of the metadata entry called {@code name}, or null when the model has
     * no such entry.
     *
     * @param model the whole .tflite file (e.g. the memory-mapped asset); not modified
     * @throws IllegalArgumentException not a TFLite FlatBuffer, or a malformed one
     */
    public static String read(ByteBuffer model, String name) {
        return new TfliteMetadata(model).find(name);
    }

    private String find(String name) {
        if (buf.limit() < 8 || !"TFL3".equals(new String(bytes(4, 4), StandardCharsets.US_ASCII))) {
            throw new IllegalArgumentException("not a TFLite model (no 'TFL3' identifier)");
        }
        int model = deref(0);
        int metadata = field(model, MODEL_METADATA);
        if (metadata == 0) return null;
        int entries = deref(metadata);
        int count = u32(entries);
        for (int i = 0; i < count; i++) {
            int entry = deref(entries + 4 + 4 * i);
            int nameField = field(entry, METADATA_NAME);
            if (nameField == 0 || !name.equals(string(deref(nameField)))) continue;
            int bufferField = field(entry, METADATA_BUFFER);
            long index = bufferField == 0 ? 0 : u32(bufferField) & 0xffffffffL;
            return new String(bufferData(index), StandardCharsets.UTF_8);
        }
        return null;
    }

    private byte[] bufferData(long index) {
        int buffersField = field(deref(0), MODEL_BUFFERS);
        if (buffersField == 0) throw new IllegalArgumentException("metadata names buffer " + index + " but the model has no buffers");
        int buffers = deref(buffersField);
        if (index >= u32(buffers)) throw new IllegalArgumentException("metadata buffer index " + index + " out of range");
        int buffer = deref(buffers + 4 + 4 * (int) index);
        int offsetField = field(buffer, BUFFER_OFFSET);
        long offset = offsetField == 0 ? 0 : u64(offsetField);
        if (offset > 1) {  // data stored after the FlatBuffer
            int sizeField = field(buffer, BUFFER_SIZE);
            long size = sizeField == 0 ? 0 : u64(sizeField);
            if (offset + size > buf.limit()) throw new IllegalArgumentException("metadata buffer beyond the end of the file");
            return bytes((int) offset, (int) size);
        }
        int dataField = field(buffer, BUFFER_DATA);
        if (dataField == 0) return new byte[0];
        int data = deref(dataField);
        return bytes(data + 4, u32(data));
    }

    /** Absolute position of a table's field {@code id}, or 0 when the field is absent. */
    private int field(int table, int id) {
        int vtable = table - i32(table);
        int vtableSize = u16(vtable);
        int slot = 4 + 2 * id;
        if (slot + 2 > vtableSize) return 0;
        int offset = u16(vtable + slot);
        return offset == 0 ? 0 : table + offset;
    }

    /** Follows the u32 offset stored at {@code pos} (relative to {@code pos}). */
    private int deref(int pos) {
        long target = (long) pos + (u32(pos) & 0xffffffffL);
        check(target, 4);
        return (int) target;
    }

    private String string(int pos) {
        return new String(bytes(pos + 4, u32(pos)), StandardCharsets.UTF_8);
    }

    private byte[] bytes(int pos, int length) {
        if (length < 0) throw new IllegalArgumentException("negative length at " + pos);
        check(pos, length);
        byte[] out = new byte[length];
        for (int i = 0; i < length; i++) out[i] = buf.get(pos + i);
        return out;
    }

    private void check(long pos, long length) {
        if (pos < 0 || pos + length > buf.limit()) {
            throw new IllegalArgumentException("malformed TFLite model: read of " + length + " bytes at " + pos + " beyond " + buf.limit());
        }
    }

    private int u16(int pos) { check(pos, 2); return buf.getShort(pos) & 0xffff; }
    private int i32(int pos) { check(pos, 4); return buf.getInt(pos); }
    private int u32(int pos) {
        check(pos, 4);
        int v = buf.getInt(pos);
        if (v < 0) throw new IllegalArgumentException("malformed TFLite model: length or offset above 2 GiB at " + pos);
        return v;
    }
    private long u64(int pos) { check(pos, 8); return buf.getLong(pos); }
}
