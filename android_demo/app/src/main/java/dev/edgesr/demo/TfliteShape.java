package dev.edgesr.demo;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A copy of a TFLite model whose input tensor declares the shape the app will feed, so that a
 * delegate is applied to the graph at that shape.
 *
 * <p>Why: LiteRT's Java {@code Interpreter} applies the delegates of its {@code Options}
 * inside the constructor ({@code NativeInterpreterWrapper.init}: create the interpreter,
 * {@code applyDelegates}, then {@code allocateTensors}), on the shape stored in the model file.
 * edgesr's exports accept any H x W and store {@code [1, 1, 1, 1]}; the Java API offers no way
 * to resize before the delegate is applied. Resizing afterwards makes LiteRT undo every delegate
 * that does not take dynamic tensors (the GPU delegate, NNAPI: {@code Subgraph::ResizeInputTensor}
 * calls {@code UndoAllDelegates}) and apply it again at the next {@code AllocateTensors}
 * ({@code RedoAllDelegates}), so the delegate was first prepared for a 1 x 1 image for nothing
 * and is rebuilt on every new size (the order {@code edgesr lint --target gpu} warns against).
 * With the shape written into the model, {@code ModifyGraphWithDelegate} prepares every op at
 * that shape ({@code PrepareOpsStartingAt}) before the delegate sees the graph: the order
 * "resize, allocate, then apply the delegate", expressed in the only place the Java API reads.
 *
 * <p>Only the input tensor's {@code shape} (and {@code shape_signature}, when present) of the
 * first subgraph are rewritten, in place in a copy (same length: no re-layout); LiteRT
 * computes every other tensor's shape from it when it prepares the ops. A model whose
 * signature fixes H x W (no -1) is returned unchanged when the shape matches and refused
 * otherwise. The schema ({@code tensorflow/compiler/mlir/lite/schema/schema.fbs}):
 * <pre>
 *   table Model    { version; operator_codes; subgraphs:[SubGraph] (field 2); ... }
 *   table SubGraph { tensors:[Tensor] (field 0); inputs:[int] (field 1); outputs:[int] (field 2); ... }
 *   table Tensor   { shape:[int] (field 0); ...; shape_signature:[int] (field 7); ... }
 * </pre>
 * Plain Java (no Android API): {@code tests/test_android_shape.py} runs the copy in LiteRT on
 * the host and compares it with the original model resized.
 */
public final class TfliteShape {
    private static final int MODEL_SUBGRAPHS = 2;
    private static final int SUBGRAPH_TENSORS = 0;
    private static final int SUBGRAPH_INPUTS = 1;
    private static final int TENSOR_SHAPE = 0;
    private static final int TENSOR_SHAPE_SIGNATURE = 7;

    private TfliteShape() {}

    /** Position of input {@code index}'s Tensor table in the first subgraph. */
    private static int inputTensor(TfliteFlatBuffer fb, int index) {
        int subgraphs = fb.vector(fb.root(), MODEL_SUBGRAPHS);
        if (subgraphs == 0 || fb.u32(subgraphs) == 0) throw new IllegalArgumentException("malformed TFLite model: no subgraph");
        int subgraph = fb.tableAt(subgraphs, 0);
        int inputs = fb.vector(subgraph, SUBGRAPH_INPUTS);
        int tensors = fb.vector(subgraph, SUBGRAPH_TENSORS);
        if (inputs == 0 || tensors == 0) throw new IllegalArgumentException("malformed TFLite model: no inputs or tensors");
        return fb.tableAt(tensors, fb.intAt(inputs, index));
    }

    /** The shape stored for input {@code index} (edgesr's exports: {@code [1, 1, 1, C]}). */
    public static int[] inputShape(ByteBuffer model, int index) {
        TfliteFlatBuffer fb = new TfliteFlatBuffer(model);
        int[] shape = fb.ints(inputTensor(fb, index), TENSOR_SHAPE);
        return shape == null ? new int[0] : shape;
    }

    /** The shape signature of input {@code index} (-1: any size), or null when the model stores none. */
    public static int[] inputShapeSignature(ByteBuffer model, int index) {
        TfliteFlatBuffer fb = new TfliteFlatBuffer(model);
        return fb.ints(inputTensor(fb, index), TENSOR_SHAPE_SIGNATURE);
    }

    /**
     * A direct, native-order copy of {@code model} (what LiteRT's Interpreter takes) whose input
     * {@code index} declares {@code shape}, e.g. {@code [1, H, W, 1]} (NHWC).
     *
     * @throws IllegalArgumentException a malformed model, a shape of another rank or with a
     *     dimension below 1, a change of a dimension the signature fixes (batch, channels, or a
     *     fixed H x W)
     */
    public static ByteBuffer withInputShape(ByteBuffer model, int index, int[] shape) {
        TfliteFlatBuffer fb = new TfliteFlatBuffer(model);
        int tensor = inputTensor(fb, index);
        int[] stored = fb.ints(tensor, TENSOR_SHAPE);
        int[] signature = fb.ints(tensor, TENSOR_SHAPE_SIGNATURE);
        if (stored == null || stored.length != shape.length) {
            throw new IllegalArgumentException("input " + index + " has rank " + (stored == null ? 0 : stored.length) + ", asked for " + Arrays.toString(shape));
        }
        for (int d = 0; d < shape.length; d++) {
            if (shape[d] < 1) throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " has a dimension below 1");
            boolean free = signature != null && signature.length == shape.length && signature[d] == -1;
            if (!free && stored[d] != shape[d]) {
                throw new IllegalArgumentException("input " + index + " fixes dimension " + d + " to " + stored[d] + " (shape "
                    + Arrays.toString(stored) + ", signature " + Arrays.toString(signature) + "); asked for " + Arrays.toString(shape));
            }
        }
        ByteBuffer src = model.duplicate();
        src.position(0);
        ByteBuffer copy = ByteBuffer.allocateDirect(src.limit()).order(ByteOrder.nativeOrder());
        copy.put(src);
        copy.rewind();
        ByteBuffer le = copy.duplicate().order(ByteOrder.LITTLE_ENDIAN); // FlatBuffers are little-endian
        for (int field : new int[] {TENSOR_SHAPE, TENSOR_SHAPE_SIGNATURE}) {
            int v = fb.vector(tensor, field);
            if (v == 0) continue;
            for (int d = 0; d < shape.length; d++) le.putInt(v + 4 + 4 * d, shape[d]);
        }
        return copy;
    }
}
