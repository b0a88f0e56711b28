// edgesr Android demo: one app module. Open this folder in Android Studio, or see README.md.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google() // LiteRT (com.google.ai.edge.litert) is published on Google Maven
        mavenCentral()
    }
}
rootProject.name = "edgesr-demo"
include(":app")
