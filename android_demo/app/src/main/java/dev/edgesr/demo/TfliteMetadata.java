package dev.edgesr.demo;

import java.nio.ByteBuffer;
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
 * The FlatBuffer is read by {@link TfliteFlatBuffer}. {@code Buffer.offset/size} (models over 2 GB)
 * point at data after the FlatBuffer, from the start of the file.
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

    private final TfliteFlatBuffer fb;

    private TfliteMetadata(ByteBuffer model) {
        fb = new TfliteFlatBuffer(model);
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
        int entries = fb.vector(fb.root(), MODEL_METADATA);
        if (entries == 0) return null;
        int count = fb.u32(entries);
        for (int i = 0; i < count; i++) {
            int entry = fb.tableAt(entries, i);
            int nameField = fb.field(entry, METADATA_NAME);
            if (nameField == 0 || !name.equals(fb.string(fb.deref(nameField)))) continue;
            int bufferField = fb.field(entry, METADATA_BUFFER);
            long index = bufferField == 0 ? 0 : fb.u32(bufferField) & 0xffffffffL;
            return new String(bufferData(index), StandardCharsets.UTF_8);
        }
        return null;
    }

    private byte[] bufferData(long index) {
        int buffers = fb.vector(fb.root(), MODEL_BUFFERS);
        if (buffers == 0) throw new IllegalArgumentException("metadata names buffer " + index + " but the model has no buffers");
        if (index >= fb.u32(buffers)) throw new IllegalArgumentException("metadata buffer index " + index + " out of range");
        int buffer = fb.tableAt(buffers, (int) index);
        int offsetField = fb.field(buffer, BUFFER_OFFSET);
        long offset = offsetField == 0 ? 0 : fb.u64(offsetField);
        if (offset > 1) {  // data stored after the FlatBuffer
            int sizeField = fb.field(buffer, BUFFER_SIZE);
            long size = sizeField == 0 ? 0 : fb.u64(sizeField);
            if (offset + size > fb.buf.limit()) throw new IllegalArgumentException("metadata buffer beyond the end of the file");
            return fb.bytes((int) offset, (int) size);
        }
        int dataField = fb.field(buffer, BUFFER_DATA);
        if (dataField == 0) return new byte[0];
        int data = fb.deref(dataField);
        return fb.bytes(data + 4, fb.u32(data));
    }
}
