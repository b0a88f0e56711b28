// The demo app: Kotlin UI, LiteRT (CPU/XNNPACK, GPU delegate, NNAPI) and the C LUT engine via JNI.
plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "dev.edgesr.demo"
    compileSdk = 36

    defaultConfig {
        applicationId = "dev.edgesr.demo"
        minSdk = 26
        targetSdk = 36
        versionCode = 1
        versionName = "0.1"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
        ndk {
            // Phones, and the x86_64 emulator for UI work (the GPU/NNAPI numbers need a phone).
            abiFilters += listOf("arm64-v8a", "x86_64")
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            signingConfig = signingConfigs.getByName("debug") // a demo: installable release build
        }
    }

    // Compiles app/src/main/cpp/lut_jni.c and ../lut_baking/lut_engine.c (referenced, not copied).
    externalNativeBuild {
        cmake {
            path = file("src/main/cpp/CMakeLists.txt")
            version = "3.22.1"
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    // Models and LUT tables are memory-mapped from the APK: they must stay uncompressed.
    androidResources {
        noCompress += listOf("tflite", "bin")
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.androidx.activity.ktx)
    implementation(libs.androidx.lifecycle.runtime.ktx)
    implementation(libs.kotlinx.coroutines.android)
    implementation(libs.litert.core)    // org.tensorflow.lite.Interpreter, NnApiDelegate
    implementation(libs.litert.gpu.delegate) // org.tensorflow.lite.gpu.GpuDelegate, CompatibilityList
    implementation(libs.litert.gpu.api)

    androidTestImplementation(libs.junit)
    androidTestImplementation(libs.androidx.test.ext.junit)
    androidTestImplementation(libs.androidx.test.runner)
}
