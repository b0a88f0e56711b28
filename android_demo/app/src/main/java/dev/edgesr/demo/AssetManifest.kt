package dev.edgesr.demo

import android.content.res.AssetManager
import org.json.JSONArray
import org.json.JSONObject
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

/**
 * `assets/edgesr/manifest.json`, written by `edgesr android-export` (edgesr/commands/android_export.py;
 * field meanings there): which models to list, their files, tensors and the tolerances of the
 * on-device checks. The I/O contract of a TFLite model is read from the model file itself (the
 * "edgesr" metadata entry, [TfliteMetadata]); the manifest's `contract` serves the LUT models.
 */
const val ASSET_DIR = "edgesr"

/** edgesr.core.contract.IOContract: colour "y" | "luma_full" | "rgb", channels, per-channel RGB. */
data class Contract(val scale: Int, val color: String, val channels: Int, val perChannel: Boolean) {
    companion object {
        fun fromJson(c: JSONObject) =
            Contract(c.getInt("scale"), c.getString("color"), c.optInt("channels", 1), c.optBoolean("per_channel", false))

        /**
         * The contract embedded in a .tflite (`edgesr export` writes it as the model's "edgesr"
         * metadata entry: `{"format": "edgesr-artifact", "contract": {...}, "provenance": {...}}`).
         * Returns null for a model without it; throws IllegalArgumentException for a malformed
         * model or metadata that is not edgesr's or states a layout other than NHWC.
         */
        fun fromModel(model: ByteBuffer, file: String): Contract? {
            val text = TfliteMetadata.read(model, TfliteMetadata.EDGESR) ?: return null
            val meta = JSONObject(text)
            require(meta.optString("format") == "edgesr-artifact") { "$file: the 'edgesr' metadata is not edgesr-artifact JSON" }
            val c = meta.getJSONObject("contract")
            require(c.optString("layout", "NHWC") == "NHWC") { "$file: contract layout ${c.optString("layout")} (the app feeds NHWC)" }
            return fromJson(c)
        }
    }
}

/** A TFLite tensor: shape (NHWC), dtype ("float32", "int8", "uint8") and affine quantization. */
data class TensorInfo(val name: String, val shape: IntArray, val dtype: String, val scale: Float, val zeroPoint: Int)

/** One int8 table of a LUT model, a slice of its `luts/NAME.bin` file. */
data class LutTable(val offset: Long, val bytes: Int)

/** A LUT model: method "srlut" (bits, scale) or "splut" (variant), tables in engine order. */
data class LutInfo(val method: String, val bits: Int, val variant: Int, val tables: List<LutTable>)

/**
 * How a photo is cut ([TilePlan], as `edgesr upscale` cuts it): the model's receptive field
 * (side in LR pixels; null when edgesr could not tell: the photo then runs in one piece) and
 * the tile side in LR pixels. From the manifest's `tiling`.
 */
data class Tiling(val receptiveField: Int?, val tile: Int) {
    /** The plan for an h x w photo, or null to run it in one piece. */
    fun plan(h: Int, w: Int): TilePlan? = receptiveField?.let { TilePlan.of(h, w, tile, it) }

    companion object {
        fun fromJson(t: JSONObject?): Tiling =
            if (t == null) Tiling(null, TilePlan.DEFAULT_TILE)
            else Tiling(if (t.isNull("receptive_field")) null else t.getInt("receptive_field"), t.optInt("tile", TilePlan.DEFAULT_TILE))
    }
}

/** Max abs error allowed on [0, 1] outputs: CPU (0 for int8 and LUT, 1e-4 for fp32) and GPU. */
data class Tolerance(val cpu: Double, val gpu: Double)

data class ModelInfo(
    val name: String,
    val format: String, // "tflite" | "lut"
    val precision: String, // "fp32" | "fp16" | "int8" | "int8-lut"...
    val file: String, // relative to assets/edgesr/
    val contract: Contract,
    val inputs: List<TensorInfo>,
    val outputs: List<TensorInfo>,
    val lut: LutInfo?,
    val tiling: Tiling,
    val tolerance: Tolerance,
) {
    override fun toString() = "$name ($format ${precision}, x${contract.scale}, ${contract.color})"
}

/** One golden vector: a raw input tensor and the expected raw output (files under assets/edgesr/). */
data class RawTensor(val file: String, val shape: IntArray, val dtype: String)
data class GoldenCase(val model: String, val name: String, val input: RawTensor, val output: RawTensor)

class AssetManifest(val models: List<ModelInfo>, val golden: List<GoldenCase>, val sample: String?) {
    companion object {
        /** Reads the manifest, or returns null when the app was built without exported assets. */
        fun load(assets: AssetManager): AssetManifest? {
            val text = try {
                assets.open("$ASSET_DIR/manifest.json").bufferedReader().use { it.readText() }
            } catch (e: java.io.IOException) {
                return null
            }
            val root = JSONObject(text)
            val models = root.getJSONArray("models").objects().map { parseModel(assets, it) }
            val golden = root.optJSONArray("cases")?.objects()?.map { parseCase(it) } ?: emptyList()
            return AssetManifest(models, golden, root.optString("sample").ifEmpty { null })
        }

        private fun parseModel(assets: AssetManager, o: JSONObject): ModelInfo {
            val file = o.getString("file")
            // TFLite: the model file carries its contract; a model exported before edgesr
            // embedded it falls back to the manifest's copy (read from its sidecar on export).
            val contract = (if (o.getString("format") == "tflite") Contract.fromModel(assets.mapAsset(file), file) else null)
                ?: Contract.fromJson(o.getJSONObject("contract"))
            val lut = o.optJSONObject("lut")?.let { l ->
                LutInfo(
                    l.getString("method"), l.optInt("bits", 4), l.optInt("variant", 0),
                    l.getJSONArray("tables").objects().map { LutTable(it.getLong("offset"), it.getInt("bytes")) },
                )
            }
            val tol = o.getJSONObject("tolerance")
            return ModelInfo(
                o.getString("name"), o.getString("format"), o.getString("precision"), file, contract,
                o.optJSONArray("inputs")?.objects()?.map { parseTensor(it) } ?: emptyList(),
                o.optJSONArray("outputs")?.objects()?.map { parseTensor(it) } ?: emptyList(),
                lut, Tiling.fromJson(o.optJSONObject("tiling")), Tolerance(tol.getDouble("cpu"), tol.optDouble("gpu", Double.NaN)),
            )
        }

        private fun parseTensor(o: JSONObject): TensorInfo {
            val q = o.optJSONObject("quantization")
            return TensorInfo(
                o.getString("name"), o.getJSONArray("shape").ints(), o.getString("dtype"),
                q?.getDouble("scale")?.toFloat() ?: 0f, q?.getInt("zero_point") ?: 0,
            )
        }

        private fun parseRaw(o: JSONObject) = RawTensor(o.getString("file"), o.getJSONArray("shape").ints(), o.getString("dtype"))

        private fun parseCase(o: JSONObject) =
            GoldenCase(o.getString("model"), o.getString("name"), parseRaw(o.getJSONObject("input")), parseRaw(o.getJSONObject("output")))

        private fun JSONArray.objects(): List<JSONObject> = (0 until length()).map { getJSONObject(it) }
        private fun JSONArray.ints(): IntArray = IntArray(length()) { getInt(it) }
    }
}

/**
 * Memory-maps an uncompressed asset (models and LUT tables; see `noCompress` in build.gradle.kts).
 * The returned buffer is direct, so it goes to LiteRT and to the JNI engine without a copy.
 */
fun AssetManager.mapAsset(path: String): ByteBuffer =
    openFd("$ASSET_DIR/$path").use { fd ->
        FileInputStream(fd.fileDescriptor).channel.use { ch ->
            ch.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength).order(ByteOrder.nativeOrder())
        }
    }

/** Reads a whole asset under assets/edgesr/ (golden vectors). */
fun AssetManager.bytes(path: String): ByteArray = open("$ASSET_DIR/$path").use { it.readBytes() }
