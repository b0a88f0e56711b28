package dev.edgesr.demo

import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.lifecycle.lifecycleScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import kotlin.math.max

/**
 * The demo's one screen: pick a photo (or the bundled sample), a model and a backend, run, and
 * compare bicubic and the model with a draggable split. The status line shows what actually ran
 * (delegate fallbacks included), the model's latency (median of [RUNS] runs after [WARMUP]
 * warm-up runs, model-space planes in and out) and the time of one whole photo with colour.
 */
class MainActivity : AppCompatActivity() {
    private companion object {
        const val WARMUP = 3
        const val RUNS = 10
        const val MAX_SIDE = 512 // photos are downscaled to this longest side before upscaling
    }

    private var manifest: AssetManifest? = null
    private var photo: Bitmap? = null
    private lateinit var status: TextView
    private lateinit var modelSpinner: Spinner
    private lateinit var backendSpinner: Spinner
    private lateinit var split: SplitImageView

    private val pickPhoto = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) setPhoto(decode(uri), uri.lastPathSegment ?: "photo")
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        status = findViewById(R.id.status)
        modelSpinner = findViewById(R.id.model)
        backendSpinner = findViewById(R.id.backend)
        split = findViewById(R.id.split)

        manifest = AssetManifest.load(assets)
        val models = manifest?.models.orEmpty()
        if (models.isEmpty()) {
            status.setText(R.string.no_assets)
            return
        }
        modelSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, models)
        modelSpinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: android.view.View?, position: Int, id: Long) {
                // LUT models run on the C engine only; TFLite models on any LiteRT backend.
                val backends = if (models[position].format == "lut") listOf(Backend.LUT) else listOf(Backend.CPU, Backend.GPU, Backend.NNAPI)
                backendSpinner.adapter = ArrayAdapter(this@MainActivity, android.R.layout.simple_spinner_dropdown_item, backends.map { it.label })
                backendSpinner.tag = backends
            }

            override fun onNothingSelected(parent: AdapterView<*>?) {}
        }
        findViewById<Button>(R.id.sample).setOnClickListener { loadSample() }
        findViewById<Button>(R.id.pick).setOnClickListener {
            pickPhoto.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        findViewById<Button>(R.id.run).setOnClickListener { run() }
        loadSample()
    }

    private fun loadSample() {
        val name = manifest?.sample ?: return
        assets.open("$ASSET_DIR/$name").use { setPhoto(BitmapFactory.decodeStream(it), name) }
    }

    /** Decodes a picked photo in software ARGB_8888, applying its EXIF rotation where the OS can. */
    private fun decode(uri: Uri): Bitmap =
        if (Build.VERSION.SDK_INT >= 28) {
            ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, _, _ ->
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
            }
        } else {
            contentResolver.openInputStream(uri).use { BitmapFactory.decodeStream(it) }
        }

    private fun setPhoto(bitmap: Bitmap, name: String) {
        val k = MAX_SIDE.toFloat() / max(bitmap.width, bitmap.height)
        val scaled = if (k < 1f) Bitmap.createScaledBitmap(bitmap, (bitmap.width * k).toInt(), (bitmap.height * k).toInt(), true) else bitmap
        photo = scaled.copy(Bitmap.Config.ARGB_8888, false)
        status.text = "$name: ${photo!!.width}x${photo!!.height}"
    }

    private fun run() {
        val bitmap = photo ?: return
        val model = modelSpinner.selectedItem as? ModelInfo ?: return
        @Suppress("UNCHECKED_CAST")
        val backends = backendSpinner.tag as? List<Backend> ?: return
        val backend = backends[backendSpinner.selectedItemPosition]
        status.text = "running ${model.name} on ${backend.label}..."
        lifecycleScope.launch {
            val text = try {
                withContext(Dispatchers.Default) { upscale(bitmap, model, backend) }
            } catch (e: Exception) {
                "failed: ${e.javaClass.simpleName}: ${e.message}"
            }
            status.text = text
        }
    }

    /**
     * Runs on a worker thread: loads the model, measures latency, shows bicubic vs model.
     * The photo is upscaled tile by tile ([TilePlan], as `edgesr upscale` does: a halo of the
     * model's receptive field, the same pixels as in one piece); every window has one shape, so
     * the runner builds one interpreter, with its delegate applied at that shape.
     */
    private suspend fun upscale(bitmap: Bitmap, model: ModelInfo, backend: Backend): String {
        val h = bitmap.height
        val w = bitmap.width
        val s = model.contract.scale
        val argb = IntArray(h * w).also { bitmap.getPixels(it, 0, w, 0, 0, w, h) }
        val color = model.contract.color
        require(color != "rgb" || model.contract.channels == 1) { "3-channel RGB models are not supported by this demo" }
        val plan = model.tiling.plan(h, w)
        val (winH, winW) = if (plan != null) plan.windowHeight to plan.windowWidth else h to w
        val window = plan?.window(argb, plan.tiles[0]) ?: argb
        // Model-space planes of one window: one (Y or luma) or three (per-channel RGB, SR-LUT's convention).
        val planes = if (color == "rgb") (0 until 3).map { ColorPipeline.channel(window, it) } else listOf(ColorPipeline.modelInput(window, color))
        val (out, latency, ranOn) = Runner.open(assets, model, backend).use { runner ->
            val photo = TilePlan.WindowUpscaler { px, ph, pw ->
                if (color == "rgb") ColorPipeline.upscaleRgb(px, ph, pw, s, runner) else ColorPipeline.upscaleLuma(px, ph, pw, s, color, runner)
            }
            // Latency of the model alone on one window (what benchmark_model measures), then the whole photo.
            val (_, lat) = Latency.measure(WARMUP, RUNS) { planes.forEach { runner.upscale(it, winH, winW) } }
            val t0 = System.nanoTime()
            val pixels = plan?.upscale(argb, s, photo) ?: photo.upscale(argb, h, w)
            Triple(pixels, lat, runner.ranOn + "\nwhole photo incl. colour, once: %.1f ms".format((System.nanoTime() - t0) / 1e6))
        }
        val before = bicubic(argb, h, w, s)
        val afterBmp = Bitmap.createBitmap(out, w * s, h * s, Bitmap.Config.ARGB_8888)
        val beforeBmp = Bitmap.createBitmap(before, w * s, h * s, Bitmap.Config.ARGB_8888)
        withContext(Dispatchers.Main) { split.show(beforeBmp, afterBmp) }
        val tiles = if (plan != null) "${plan.tiles.size} tile(s) of ${plan.tile} px in ${winW}x$winH windows (receptive field ${model.tiling.receptiveField})" else "one piece (no receptive field in the manifest)"
        return "${model.name}\nrequested ${backend.label}\nran on $ranOn\n${w}x$h -> ${w * s}x${h * s}, $tiles\nmodel ${planes.size} plane(s) on one window: $latency"
    }

    /** MATLAB bicubic of each RGB channel: the baseline shown left of the divider. */
    private fun bicubic(argb: IntArray, h: Int, w: Int, s: Int): IntArray {
        val out = IntArray(h * s * w * s) { 0xff shl 24 }
        for (c in 0 until 3) {
            val shift = 16 - 8 * c
            val plane = DoubleArray(argb.size) { ((argb[it] shr shift) and 0xff).toDouble() }
            val up = ColorPipeline.bicubicUpscale(plane, h, w, s)
            for (i in up.indices) out[i] = out[i] or (Math.rint(up[i]).coerceIn(0.0, 255.0).toInt() shl shift)
        }
        return out
    }
}
