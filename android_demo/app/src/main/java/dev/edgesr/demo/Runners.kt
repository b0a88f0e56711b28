package dev.edgesr.demo

import android.content.res.AssetManager
import android.os.Build
import android.util.Log
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import java.io.Closeable
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.abs

private const val TAG = "edgesr"

/** Where a model can run. LUT models only run on the C engine. */
enum class Backend(val label: String) {
    CPU("CPU (XNNPACK)"),
    GPU("GPU delegate"),
    NNAPI("NNAPI"),
    LUT("LUT engine (C, JNI)"),
}

/** A loaded model: upscales one plane in model space (see [ColorPipeline]) and runs raw tensors. */
interface Runner : ColorPipeline.PlaneUpscaler, Closeable {
    /** What actually ran, after any fallback (e.g. "CPU (XNNPACK) - GPU delegate failed: ..."). */
    val ranOn: String

    /** One inference on a raw input tensor (golden vectors): returns the raw output tensor bytes. */
    fun runRaw(input: ByteArray, shape: IntArray): ByteArray

    companion object {
        fun open(assets: AssetManager, model: ModelInfo, backend: Backend): Runner =
            if (model.format == "lut") LutRunner(assets, model) else TfliteRunner(assets, model, backend)
    }
}

/**
 * A TFLite model in LiteRT's Interpreter, with the requested delegate or, when that delegate
 * is missing or refuses the graph, on the CPU; [ranOn] says which (fallbacks are shown).
 *
 * The delegate is applied to the graph at the shape it will run, never resized afterwards:
 * LiteRT's Java Interpreter applies the delegates of its Options inside its constructor, on the
 * input shape stored in the model (edgesr's exports accept any H x W and store 1 x 1), and a
 * resize after that makes LiteRT undo the GPU or NNAPI delegate and apply it again. So each
 * input shape gets its own interpreter, built from a copy of the model with that shape written
 * in ([TfliteShape.withInputShape]); [InterpreterPerShape] keeps the current one and rebuilds
 * (closing the old interpreter and delegate) only when the shape changes. A photo goes through
 * [TilePlan], whose windows all have one shape: one interpreter per photo.
 */
class TfliteRunner(assets: AssetManager, private val model: ModelInfo, private val backend: Backend) : Runner {
    /** An interpreter, the delegate applied to it (closed with it) and what actually ran. */
    private class Session(val interpreter: Interpreter, val delegate: Delegate?, val label: String) : AutoCloseable {
        override fun close() {
            interpreter.close()
            (delegate as? AutoCloseable)?.close()
        }
    }

    private val buffer = assets.mapAsset(model.file)
    private val sessions = InterpreterPerShape<Session> { shape -> newSession(shape) }

    /** What ran the last inference (set when an interpreter is built for a shape). */
    override var ranOn: String = "${backend.label} (no inference yet)"
        private set

    private fun cpuOptions() = Interpreter.Options().setNumThreads(4).setUseXNNPACK(true)

    private fun cpu(shaped: ByteBuffer, why: String?): Session =
        Session(Interpreter(shaped, cpuOptions()), null, if (why == null) Backend.CPU.label else "${Backend.CPU.label} - $why")

    /** An interpreter whose input is [shape] from the start, so the delegate is prepared for it. */
    private fun newSession(shape: IntArray): Session {
        val shaped = TfliteShape.withInputShape(buffer, 0, shape)
        val d: Delegate = when (backend) {
            Backend.GPU -> {
                val compat = CompatibilityList()
                try {
                    if (!compat.isDelegateSupportedOnThisDevice) return cpu(shaped, "GPU delegate not supported on this device")
                    GpuDelegate(compat.bestOptionsForThisDevice)
                } finally {
                    compat.close()
                }
            }
            // setUseNnapiCpu(false): NNAPI's own CPU reference path would not be the NPU/DSP.
            Backend.NNAPI -> {
                if (Build.VERSION.SDK_INT < 27) return cpu(shaped, "NNAPI needs Android 8.1+")
                NnApiDelegate(NnApiDelegate.Options().setUseNnapiCpu(false))
            }
            else -> return cpu(shaped, null)
        }
        return try {
            // A delegate may take only part of the graph; LiteRT logs "Replacing N out of M node(s)".
            Session(Interpreter(shaped, cpuOptions().addDelegate(d)), d, "${backend.label} (partition: see logcat 'Replacing ... node(s)')")
        } catch (e: Exception) {
            (d as? AutoCloseable)?.close()
            cpu(shaped, "${backend.label} failed: ${e.message?.lineSequence()?.first()}")
        }
    }

    override fun runRaw(input: ByteArray, shape: IntArray): ByteArray {
        val session = sessions.get(shape)
        if (session.label != ranOn) Log.i(TAG, "${model.name} ${shape.contentToString()}: requested ${backend.label}, running on ${session.label}")
        ranOn = session.label
        val interpreter = session.interpreter
        val inBuf = ByteBuffer.allocateDirect(input.size).order(ByteOrder.nativeOrder()).put(input)
        inBuf.rewind()
        val outBuf = ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes()).order(ByteOrder.nativeOrder())
        interpreter.run(inBuf, outBuf)
        (session.delegate as? NnApiDelegate)?.let {
            // NNAPI failures after creation fall back to the CPU silently; make them visible.
            if (it.nnapiErrno != 0) Log.w(TAG, "${model.name}: NNAPI errno ${it.nnapiErrno}: the CPU ran this inference")
        }
        return ByteArray(outBuf.capacity()).also { outBuf.rewind(); outBuf.get(it) }
    }

    /** Model-space plane (Y/255 or one RGB channel) -> (s*h) x (s*w) floats on [0, 1]. */
    override fun upscale(x: FloatArray, h: Int, w: Int): FloatArray {
        val inT = model.inputs[0]
        val outT = model.outputs[0]
        val raw = ByteBuffer.allocate(x.size * (if (inT.dtype == "float32") 4 else 1)).order(ByteOrder.nativeOrder())
        for (v in x) {
            if (inT.dtype == "float32") raw.putFloat(v) else raw.put(quantize(v, inT).toByte())
        }
        val out = ByteBuffer.wrap(runRaw(raw.array(), intArrayOf(1, h, w, 1))).order(ByteOrder.nativeOrder())
        val n = x.size * model.contract.scale * model.contract.scale
        return FloatArray(n) { i ->
            when (outT.dtype) {
                "float32" -> out.getFloat(4 * i)
                "int8" -> (out.get(i) - outT.zeroPoint) * outT.scale // real = scale * (q - zero_point)
                else -> ((out.get(i).toInt() and 0xff) - outT.zeroPoint) * outT.scale
            }
        }
    }

    /**
     * Input quantization exactly as edgesr's TFLiteUpscaler (converters/runtime.py, through
     * quantization.arithmetic.quantize) and TFLite's QUANTIZE op do it, so the app feeds the int8
     * tensor Python fed: q = clip(round_half_away(x / scale) + zero_point), with x / scale a float32
     * division and the rounding sign(s) * floor(|s| + 0.5) in float32, as NumPy computes it there.
     */
    private fun quantize(x: Float, t: TensorInfo): Int {
        val s = x / t.scale
        val rounded = (Math.signum(s) * kotlin.math.floor(kotlin.math.abs(s) + 0.5f)).toInt()
        return (rounded + t.zeroPoint).coerceIn(if (t.dtype == "int8") -128 else 0, if (t.dtype == "int8") 127 else 255)
    }

    override fun close() = sessions.close()
}

/**
 * A LUT model on edgesr's C engine through JNI ([LutEngine]); tables are memory-mapped slices of
 * `luts/NAME.bin`. The engine is integer-only: output equals edgesr's numpy engine bit for bit.
 */
class LutRunner(assets: AssetManager, private val model: ModelInfo) : Runner {
    private val lut = requireNotNull(model.lut) { "${model.name}: no LUT description in the manifest" }
    private val tables: Array<ByteBuffer>
    override val ranOn = Backend.LUT.label + ", 1 thread"

    init {
        LutEngine.load()
        val file = assets.mapAsset(model.file)
        tables = lut.tables.map { t ->
            val d = file.duplicate()
            d.position(t.offset.toInt()).limit((t.offset + t.bytes).toInt())
            d.slice() // a slice of a direct buffer is direct: the engine reads the APK's pages
        }.toTypedArray()
    }

    /** uint8 plane h x w -> uint8 plane (s*h) x (s*w). */
    fun upscaleBytes(plane: ByteArray, h: Int, w: Int): ByteArray = when (lut.method) {
        "srlut" -> LutEngine.srlut(tables[0], lut.bits, model.contract.scale, plane, h, w)
        "splut" -> LutEngine.splut(tables, lut.variant, plane, h, w)
        else -> throw IllegalArgumentException("${model.name}: unknown LUT method ${lut.method}")
    }

    /** Golden LUT cases hold (planes, h, w) uint8: each colour plane runs through the engine on its own. */
    override fun runRaw(input: ByteArray, shape: IntArray): ByteArray {
        val h = shape[shape.size - 2]
        val w = shape[shape.size - 1]
        val planes = input.size / (h * w)
        val outputs = (0 until planes).map { p -> upscaleBytes(input.copyOfRange(p * h * w, (p + 1) * h * w), h, w) }
        val out = ByteArray(outputs.sumOf { it.size })
        outputs.forEachIndexed { p, o -> System.arraycopy(o, 0, out, p * o.size, o.size) }
        return out
    }

    /** Model space [0, 1] -> 8-bit levels -> engine -> levels / 255, exactly as lut_baking's LutUpscaler. */
    override fun upscale(x: FloatArray, h: Int, w: Int): FloatArray =
        ColorPipeline.fromLevels(upscaleBytes(ColorPipeline.toLevels(x), h, w))

    override fun close() {}
}

/** Latency of [block]: [warmup] runs discarded, then the median, min and max of [runs] runs (ms). */
data class Latency(val medianMs: Double, val minMs: Double, val maxMs: Double, val runs: Int, val warmup: Int) {
    override fun toString() = "median %.1f ms (min %.1f, max %.1f) over %d runs after %d warm-up".format(medianMs, minMs, maxMs, runs, warmup)

    companion object {
        fun <T> measure(warmup: Int, runs: Int, block: () -> T): Pair<T, Latency> {
            var result = block()
            repeat(warmup - 1) { result = block() }
            val ms = DoubleArray(runs) {
                val t0 = System.nanoTime()
                result = block()
                (System.nanoTime() - t0) / 1e6
            }.sorted()
            val median = if (runs % 2 == 1) ms[runs / 2] else (ms[runs / 2 - 1] + ms[runs / 2]) / 2
            return result to Latency(median, ms.first(), ms.last(), runs, warmup)
        }
    }
}

/** |a - b| summary of two equal-length arrays: the readable diff the checks report. */
data class Diff(val maxAbs: Double, val mismatched: Int, val count: Int) {
    override fun toString() = "max |diff| %.3g, %d of %d elements differ".format(maxAbs, mismatched, count)

    companion object {
        fun of(a: FloatArray, b: FloatArray): Diff {
            var m = 0.0
            var n = 0
            for (i in a.indices) {
                val d = abs(a[i].toDouble() - b[i].toDouble())
                if (d > 0) n++
                if (d > m || d.isNaN()) m = d
            }
            return Diff(m, n, a.size)
        }
    }
}
