/*
 * Thin JNI wrapper around edgesr's portable C LUT engine (lut_baking/lut_engine.c).
 *
 * Java side: dev.edgesr.demo.LutEngine (plain Java, also run on the host JVM by
 * tests/test_android_jni.py). Every buffer is a direct java.nio.ByteBuffer, so the engine
 * reads and writes Java memory in place; this file only checks sizes and translates errors:
 *
 *   - a null, non-direct or too small buffer, a bad bits/scale/h/w: IllegalArgumentException;
 *   - a non-zero status from the engine: IllegalStateException with the status.
 *
 * Sizes are computed in 64-bit arithmetic (h * w * scale^2 overflows int32 for large
 * photos at x4 long before memory runs out).
 */
#include <jni.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lut_engine.h"

/* SPLUT always upscales by 4 (Ma et al., ECCV 2022). */
#define SPLUT_SCALE 4
/* Variants 0..8 (0, 1, 2 = S, M, L): 2 * (5 + 4 * variant) tables, at most 74 (lut_engine.h). */
#define SPLUT_MAX_VARIANT 8
#define SPLUT_MAX_LUTS (2 * (5 + 4 * SPLUT_MAX_VARIANT))
#define SPLUT_ENTRIES 65536 /* 16^4 rows per table */

static void throw_named(JNIEnv *env, const char *cls_name, const char *msg) {
    jclass cls = (*env)->FindClass(env, cls_name);
    if (cls != NULL) {
        (*env)->ThrowNew(env, cls, msg);
    }
}

/* Address of a direct buffer holding at least `need` bytes, or NULL with an exception pending. */
static void *direct_address(JNIEnv *env, jobject buf, int64_t need, const char *what) {
    char msg[160];
    if (buf == NULL) {
        snprintf(msg, sizeof msg, "%s is null", what);
        throw_named(env, "java/lang/IllegalArgumentException", msg);
        return NULL;
    }
    void *addr = (*env)->GetDirectBufferAddress(env, buf);
    jlong capacity = (*env)->GetDirectBufferCapacity(env, buf);
    if (addr == NULL || capacity < 0) {
        snprintf(msg, sizeof msg, "%s is not a direct ByteBuffer", what);
        throw_named(env, "java/lang/IllegalArgumentException", msg);
        return NULL;
    }
    if ((int64_t)capacity < need) {
        snprintf(msg, sizeof msg, "%s holds %lld bytes, needs %lld", what, (long long)capacity, (long long)need);
        throw_named(env, "java/lang/IllegalArgumentException", msg);
        return NULL;
    }
    return addr;
}

/* h and w in [1, 2^15] keep every product below 2^34: safe in int64 and in the engine's loops. */
static int check_size(JNIEnv *env, jint h, jint w) {
    if (h < 1 || w < 1 || h > 32768 || w > 32768) {
        char msg[96];
        snprintf(msg, sizeof msg, "image size %dx%d outside 1..32768", (int)h, (int)w);
        throw_named(env, "java/lang/IllegalArgumentException", msg);
        return 0;
    }
    return 1;
}

static void check_status(JNIEnv *env, int status, const char *engine) {
    if (status != 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s returned status %d", engine, status);
        throw_named(env, "java/lang/IllegalStateException", msg);
    }
}

JNIEXPORT void JNICALL Java_dev_edgesr_demo_LutEngine_srlutUpscale(JNIEnv *env, jclass cls, jobject lut, jint bits, jint scale,
                                                                    jobject in, jint h, jint w, jobject out) {
    (void)cls;
    if (bits < 1 || bits > 8 || scale < 1 || scale > 8) {
        char msg[96];
        snprintf(msg, sizeof msg, "bits %d or scale %d out of range (1..8, 1..8)", (int)bits, (int)scale);
        throw_named(env, "java/lang/IllegalArgumentException", msg);
        return;
    }
    if (!check_size(env, h, w)) {
        return;
    }
    /* (2^(8-bits) + 1)^4 table rows of scale*scale int8 entries */
    int64_t levels = ((int64_t)1 << (8 - bits)) + 1;
    int64_t lut_bytes = levels * levels * levels * levels * scale * scale;
    int64_t in_bytes = (int64_t)h * w;
    const int8_t *lut_p = direct_address(env, lut, lut_bytes, "lut");
    if (lut_p == NULL) {
        return;
    }
    const uint8_t *in_p = direct_address(env, in, in_bytes, "in");
    if (in_p == NULL) {
        return;
    }
    uint8_t *out_p = direct_address(env, out, in_bytes * scale * scale, "out");
    if (out_p == NULL) {
        return;
    }
    check_status(env, edgesr_srlut_upscale(lut_p, bits, scale, in_p, h, w, out_p), "edgesr_srlut_upscale");
}

JNIEXPORT void JNICALL Java_dev_edgesr_demo_LutEngine_splutUpscale(JNIEnv *env, jclass cls, jobjectArray luts, jint variant,
                                                                    jobject in, jint h, jint w, jobject out) {
    (void)cls;
    if (luts == NULL) {
        throw_named(env, "java/lang/IllegalArgumentException", "luts is null");
        return;
    }
    if (variant < 0 || variant > SPLUT_MAX_VARIANT) {
        throw_named(env, "java/lang/IllegalArgumentException", "SPLUT variant must be 0..8 (0 = S, 1 = M, 2 = L)");
        return;
    }
    /* Per branch (MSB, then LSB): spatial (x4), 4 per mixing stage (x4), 4 final (x16 values). */
    const int per_branch = 5 + 4 * variant;
    jsize n_luts = (*env)->GetArrayLength(env, luts);
    if (n_luts != 2 * per_branch) {
        char msg[96];
        snprintf(msg, sizeof msg, "SPLUT variant %d needs %d tables, got %d", (int)variant, 2 * per_branch, (int)n_luts);
        throw_named(env, "java/lang/IllegalArgumentException", msg);
        return;
    }
    if (!check_size(env, h, w)) {
        return;
    }
    const int8_t *tables[SPLUT_MAX_LUTS];
    for (jsize i = 0; i < n_luts; i++) {
        int final_stage = (i % per_branch) >= per_branch - 4;
        int64_t need = (int64_t)SPLUT_ENTRIES * (final_stage ? 16 : 4);
        jobject buf = (*env)->GetObjectArrayElement(env, luts, i);
        char what[32];
        snprintf(what, sizeof what, "luts[%d]", (int)i);
        tables[i] = direct_address(env, buf, need, what);
        if (buf != NULL) {
            (*env)->DeleteLocalRef(env, buf); /* the buffer stays reachable through the array */
        }
        if (tables[i] == NULL) {
            return;
        }
    }
    int64_t in_bytes = (int64_t)h * w;
    const uint8_t *in_p = direct_address(env, in, in_bytes, "in");
    if (in_p == NULL) {
        return;
    }
    uint8_t *out_p = direct_address(env, out, in_bytes * SPLUT_SCALE * SPLUT_SCALE, "out");
    if (out_p == NULL) {
        return;
    }
    check_status(env, edgesr_splut_upscale(tables, n_luts, variant, in_p, h, w, out_p), "edgesr_splut_upscale");
}
