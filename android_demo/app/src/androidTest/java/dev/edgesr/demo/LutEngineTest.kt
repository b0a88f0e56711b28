package dev.edgesr.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertThrows
import org.junit.Test
import org.junit.runner.RunWith
import java.nio.ByteBuffer

/**
 * The NDK build of the LUT engine and its JNI wrapper, without exported assets.
 * (Bit-exactness against Python is GoldenVectorTest's job; this checks the library loads on the
 * phone's ABI, computes a case with a closed form, and rejects bad buffers.)
 */
@RunWith(AndroidJUnit4::class)
class LutEngineTest {
    init {
        LutEngine.load()
    }

    /**
     * Every SR-LUT entry = c: each rotation's interpolation gives q * c (the weights sum to q),
     * the 4 rotations sum to T = 4 q c, and out = (T + q/2) >> bits = 4 c (lut_engine.h).
     */
    @Test
    fun constantTableGivesFlatImage() {
        val c = 25
        val bits = 4
        val scale = 3
        val levels = (1 shl (8 - bits)) + 1
        val lut = ByteBuffer.allocateDirect(levels * levels * levels * levels * scale * scale)
        while (lut.hasRemaining()) lut.put(c.toByte())
        lut.rewind()
        val h = 7
        val w = 5
        val image = ByteArray(h * w) { (it * 37 % 256).toByte() }
        val out = LutEngine.srlut(lut, bits, scale, image, h, w)
        assertArrayEquals(ByteArray(h * scale * w * scale) { (4 * c).toByte() }, out)
    }

    @Test
    fun badBuffersThrow() {
        val small = ByteBuffer.allocateDirect(10)
        assertThrows(IllegalArgumentException::class.java) { LutEngine.srlut(small, 4, 2, ByteArray(6), 2, 3) }
        assertThrows(IllegalArgumentException::class.java) { LutEngine.splut(arrayOf(small), 0, ByteArray(6), 2, 3) }
    }
}
