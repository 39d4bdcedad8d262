plugins {
    kotlin("jvm") version "2.1.20" apply false
    id("org.jetbrains.intellij.platform") version "2.5.0" apply false
}
