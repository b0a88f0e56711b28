package dev.edgesr.demo

import android.os.Bundle
import android.util.Log
import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import org.junit.runner.RunWith
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * On-device checks of the exported models against the golden vectors in the app's assets
 * (`edgesr android-export` puts them there, with the tolerances, in manifest.json "cases").
 *
 * Per case and per backend:
 * - int8 TFLite on the CPU (XNNPACK) and the LUT engine: output bytes equal the golden bytes
 *   exactly (0 differing elements);
 * - fp32 TFLite on the CPU: max |diff| <= tolerance.cpu (1e-4 on [0, 1]);
 * - GPU delegate: max |diff| of the dequantized outputs <= tolerance.gpu (the fp16 error that
 *   `edgesr validate` measured, or 1/255); skipped, and reported, where no GPU delegate exists;
 * - NNAPI: reported only (drivers differ by vendor and NNAPI is deprecated from Android 15).
 *
 * Every result line goes to logcat (tag edgesr-golden) and to the instrumentation status, so
 * `./gradlew connectedAndroidTest` shows what each delegate did; failures are collected and
 * reported together at the end.
 */
@RunWith(AndroidJUnit4::class)
class GoldenVectorTest {
    private val instrumentation = InstrumentationRegistry.getInstrumentation()
    private val assets = instrumentation.targetContext.assets
    private val failures = mutableListOf<String>()

    private fun report(line: String) {
        Log.i("edgesr-golden", line)
        instrumentation.sendStatus(0, Bundle().apply { putString("stream", line + "\n") })
    }

    private fun check(ok: Boolean, line: String) {
        report((if (ok) "PASS " else "FAIL ") + line)
        if (!ok) failures += line
    }

    @Test
    fun goldenVectors() {
        val manifest = AssetManifest.load(assets)
            ?: throw AssertionError("no assets/edgesr/manifest.json: run `edgesr android-export RUN_DIR --app android_demo` first")
        assertTrue("the manifest has no golden cases", manifest.golden.isNotEmpty())
        for (case in manifest.golden) {
            val model = manifest.models.firstOrNull { it.name == case.model }
            if (model == null) {
                check(false, "golden case ${case.name} names unknown model ${case.model}")
                continue
            }
            val input = assets.bytes(case.input.file)
            val expected = assets.bytes(case.output.file)
            val backends = if (model.format == "lut") listOf(Backend.LUT) else listOf(Backend.CPU, Backend.GPU, Backend.NNAPI)
            for (backend in backends) runCase(model, case, backend, input, expected)
        }
        if (failures.isNotEmpty()) fail("${failures.size} check(s) failed:\n" + failures.joinToString("\n"))
    }

    private fun runCase(model: ModelInfo, case: GoldenCase, backend: Backend, input: ByteArray, expected: ByteArray) {
        val tag = "${model.name} ${case.name} ${backend.label}"
        val (got, ranOn) = try {
            Runner.open(assets, model, backend).use { it.runRaw(input, case.input.shape) to it.ranOn }
        } catch (e: Exception) {
            return check(false, "$tag: ${e.javaClass.simpleName}: ${e.message}")
        }
        val fellBack = backend != Backend.CPU && backend != Backend.LUT && ranOn.startsWith(Backend.CPU.label)
        if (fellBack) return report("SKIP $tag: $ranOn")
        val out = model.outputs.firstOrNull()
        val exact = model.format == "lut" || (backend == Backend.CPU && case.output.dtype != "float32")
        if (exact) {
            val diff = Diff.of(levels(got, case.output.dtype), levels(expected, case.output.dtype))
            return check(got.size == expected.size && diff.mismatched == 0, "$tag [$ranOn] exact: $diff (in LSB)")
        }
        val diff = Diff.of(real(got, case.output.dtype, out), real(expected, case.output.dtype, out))
        when (backend) {
            Backend.CPU -> check(diff.maxAbs <= model.tolerance.cpu, "$tag [$ranOn] tolerance ${model.tolerance.cpu}: $diff")
            Backend.GPU -> check(diff.maxAbs <= model.tolerance.gpu, "$tag [$ranOn] tolerance ${model.tolerance.gpu}: $diff")
            else -> report("INFO $tag [$ranOn] (not asserted): $diff")
        }
    }

    /** Raw integer levels of a uint8/int8 tensor, for exact comparison and LSB counts. */
    private fun levels(bytes: ByteArray, dtype: String) =
        FloatArray(bytes.size) { if (dtype == "uint8") (bytes[it].toInt() and 0xff).toFloat() else bytes[it].toFloat() }

    /** Real values on [0, 1]: float32 as is, int8 dequantized (real = scale * (q - zero_point)). */
    private fun real(bytes: ByteArray, dtype: String, t: TensorInfo?): FloatArray = when (dtype) {
        "float32" -> FloatArray(bytes.size / 4).also { ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(it) }
        "uint8" -> FloatArray(bytes.size) { ((bytes[it].toInt() and 0xff) - (t?.zeroPoint ?: 0)) * (t?.scale ?: (1f / 255f)) }
        else -> FloatArray(bytes.size) { (bytes[it] - (t?.zeroPoint ?: 0)) * (t?.scale ?: 1f) }
    }
}
