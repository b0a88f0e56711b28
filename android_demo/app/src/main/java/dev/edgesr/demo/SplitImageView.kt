package dev.edgesr.demo

import android.annotation.SuppressLint
import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.Rect
import android.graphics.RectF
import android.util.AttributeSet
import android.view.MotionEvent
import android.view.View

/**
 * Before/after comparison: [before] (bicubic) left of a draggable divider, [after] (the model)
 * right of it. Both bitmaps have the same size and are drawn fitted to the view, unfiltered
 * (nearest neighbour), so zooming the screen shows the model's own pixels.
 */
class SplitImageView @JvmOverloads constructor(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {
    private var before: Bitmap? = null
    private var after: Bitmap? = null
    private var split = 0.5f // divider position, fraction of the image width
    private val pixels = Paint().apply { isFilterBitmap = false }
    private val line = Paint().apply { color = Color.WHITE; strokeWidth = 4f }
    private val text = Paint().apply { color = Color.WHITE; textSize = 36f; setShadowLayer(4f, 0f, 0f, Color.BLACK) }
    private val dest = RectF()

    fun show(before: Bitmap, after: Bitmap) {
        require(before.width == after.width && before.height == after.height) { "before and after differ in size" }
        this.before = before
        this.after = after
        invalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val b = before ?: return
        val a = after ?: return
        val k = minOf(width.toFloat() / b.width, height.toFloat() / b.height)
        dest.set(0f, 0f, b.width * k, b.height * k)
        dest.offset((width - dest.width()) / 2, (height - dest.height()) / 2)
        val cut = (b.width * split).toInt()
        val xCut = dest.left + cut * k
        canvas.drawBitmap(b, Rect(0, 0, cut, b.height), RectF(dest.left, dest.top, xCut, dest.bottom), pixels)
        canvas.drawBitmap(a, Rect(cut, 0, a.width, a.height), RectF(xCut, dest.top, dest.right, dest.bottom), pixels)
        canvas.drawLine(xCut, dest.top, xCut, dest.bottom, line)
        canvas.drawText("bicubic", dest.left + 8f, dest.top + 40f, text)
        canvas.drawText("model", dest.right - text.measureText("model") - 8f, dest.top + 40f, text)
    }

    @SuppressLint("ClickableViewAccessibility") // dragging only moves the divider
    override fun onTouchEvent(event: MotionEvent): Boolean {
        val b = before ?: return false
        val k = minOf(width.toFloat() / b.width, height.toFloat() / b.height)
        val left = (width - b.width * k) / 2
        split = ((event.x - left) / (b.width * k)).coerceIn(0f, 1f)
        invalidate()
        return true
    }
}
