// Gradle build of the doppel JetBrains plugin, for machines that reach Maven Central, the Gradle
// plugin portal and the JetBrains repositories (not the machine this was written on: see
// README.md). The core is also built and tested without Gradle by build.sh.
rootProject.name = "doppel-jetbrains"

pluginManagement {
    repositories {
        gradlePluginPortal()
        mavenCentral()
    }
}

include("core", "plugin")
